"""lstm-infer demo: convert a trained PyTorch model, then stream a sensor through it.

    pip install -e '.[torch]'
    python examples/demo.py            # what `make demo` runs

1. converts examples/models/sensor_lstm.pt (a state_dict: LSTM(1->32) + Linear, trained by
   examples/train_sensor_model.py to predict the next sample of a noisy sensor signal)
   into build/demo/sensor_lstm.lstm, verified numerically against PyTorch;
2. streams a few thousand samples of a live (synthetic) signal through `stream().step()`
   one sample at a time, comparing each sample with the model's prediction for it, and
   flags anomalies: an injected spike, a stuck sensor, and a dropped (NaN) reading, which
   the stream rejects without touching its state and which the demo fills in with the
   model's own prediction;
3. prints the per-step latency (median / p99 over the loop, after warm-up) and the time of
   the very first step (kernel load from the Numba cache, or compilation on a cold cache);
4. saves sensor_anomalies.png next to the converted model: the signal against the model's
   predictions around the three faults, and the error with the threshold and the flags.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from synthetic_sensor import sensor_signal  # noqa: E402

import lstm_infer  # noqa: E402

SPIKE_AT, SPIKE = 2000, 2.0          # one corrupted sample
STUCK_FROM, STUCK_LEN = 2600, 40     # the sensor repeats its last value
DROPOUT_AT = 1500                    # a NaN reading


def convert(src: str, out: str) -> None:
    try:
        import converters
        t0 = time.perf_counter()
        report = converters.convert_file(src, out)
    except ImportError as e:
        sys.exit(f"demo: converting {src} needs PyTorch and the torch importer "
                 f"({e}); install with: pip install -e '.[torch]'")
    dt = time.perf_counter() - t0
    print(report)
    if report.verify is not None:
        v = report.verify
        print(f"conversion took {dt:.2f} s; max abs error vs PyTorch: {v.max_abs_error:.2e} "
              f"({'ok' if v.ok else 'ABOVE TOLERANCE'})")
        if not v.ok:
            sys.exit("demo: the converted model does not match PyTorch")


FIRST_CALL = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np, lstm_infer
t1 = time.perf_counter()
m = lstm_infer.load(sys.argv[1])
t2 = time.perf_counter()
s = m.stream()
x = np.zeros(m.input_size, np.float32)
t3 = time.perf_counter()
s.step(x)
t4 = time.perf_counter()
s.step(x)
t5 = time.perf_counter()
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "load_ms": (t2 - t1) * 1e3,
                  "first_step_ms": (t4 - t3) * 1e3, "second_step_us": (t5 - t4) * 1e6}))
"""


def first_call_in_fresh_process(path: str) -> dict | None:
    """Time import, load and the first step in a new Python process, as a device would see
    them at start-up (this process has its kernels loaded already)."""
    import json
    import subprocess
    try:
        r = subprocess.run([sys.executable, "-c", FIRST_CALL, path], capture_output=True,
                           text=True, timeout=600)
        return json.loads(r.stdout) if r.returncode == 0 else None
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def events(flags: list[int], gap: int = 10) -> list[tuple[int, int]]:
    """Group flagged steps less than `gap` apart into (first, last) events."""
    out: list[tuple[int, int]] = []
    for k in flags:
        if out and k <= out[-1][1] + gap:
            out[-1] = (out[-1][0], k)
        else:
            out.append((k, k))
    return out


def _show(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _cause(a: int, b: int) -> str:
    for name, lo, hi in (("the injected spike", SPIKE_AT, SPIKE_AT + 15),
                         ("the stuck sensor, then recovery", STUCK_FROM, STUCK_FROM + STUCK_LEN + 30),
                         ("the dropped reading", DROPOUT_AT, DROPOUT_AT + 5)):
        if a <= hi and b >= lo:
            return name
    return "unexpected"


PLOT_FROM, PLOT_TO = 1400, 2750     # the stretch with the three faults


def save_plot(path: str, fed, pred, resid, threshold: float, flagged: list[int]) -> str:
    """Signal vs prediction, and |error| with the threshold, over the faults' stretch."""
    t = np.arange(PLOT_FROM, PLOT_TO)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _save_plain(path, fed, pred, resid, threshold, flagged)
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(11, 5.5), sharex=True,
                                 gridspec_kw={"height_ratios": [1.4, 1]})
    a1.plot(t, fed[t], lw=0.8, color="black", label="sensor (as fed to the model)")
    a1.plot(t, pred[t - 1], lw=0.8, color="tab:red", alpha=0.8,
            label="predicted one step ahead (lstm-infer)")
    a1.set_ylabel("signal")
    a1.set_title("streamed one sample at a time: NaN at %d, spike at %d, stuck sensor %d-%d"
                 % (DROPOUT_AT, SPIKE_AT, STUCK_FROM, STUCK_FROM + STUCK_LEN - 1))
    a1.legend(loc="upper left", fontsize=8)
    a2.plot(t, resid[t - 1], lw=0.7, color="0.3", label="|actual - predicted|")
    a2.axhline(threshold, color="tab:blue", lw=1, ls="--", label="threshold")
    for k in flagged:
        if PLOT_FROM <= k < PLOT_TO:
            a2.axvline(k, color="tab:orange", lw=0.8, alpha=0.6)
    a2.set_xlabel("step (orange: flagged)")
    a2.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return "matplotlib"


def _save_plain(path: str, fed, pred, resid, threshold: float, flagged: list[int]) -> str:
    """Without matplotlib: grey-scale panels drawn into an array (signal black, prediction
    grey; below, the error, the threshold as a dotted row, flagged steps as grey columns)."""
    from convlstm_moving_shapes import write_png
    n, H = PLOT_TO - PLOT_FROM, 150
    img = np.ones((2 * H + 10, n), np.float32)
    t = np.arange(PLOT_FROM, PLOT_TO)

    def rows(y, top, lo, hi):
        return top + H - 1 - np.clip((y - lo) / (hi - lo) * (H - 1), 0, H - 1).astype(int)

    def draw(y, top, lo, hi, shade):
        r = rows(y, top, lo, hi)
        for c in range(n - 1):
            a, b = sorted((r[c], r[c + 1]))
            img[a:b + 1, c] = np.minimum(img[a:b + 1, c], shade)
    for k in flagged:
        if PLOT_FROM <= k < PLOT_TO:
            img[H + 10:, k - PLOT_FROM] = 0.8
    lo, hi = float(min(fed[t].min(), pred[t - 1].min())), float(max(fed[t].max(), pred[t - 1].max()))
    draw(pred[t - 1], 0, lo, hi, 0.55)
    draw(fed[t], 0, lo, hi, 0.0)
    top = float(resid[t - 1].max())
    img[rows(np.array([threshold]), H + 10, 0, top)[0], ::4] = 0.3
    draw(resid[t - 1], H + 10, 0, top, 0.0)
    write_png(path, img)
    return "numpy PNG writer"


def main() -> None:
    ap = argparse.ArgumentParser(description="lstm-infer demo: convert, then stream a sensor")
    ap.add_argument("--source", default=os.path.join(HERE, "models", "sensor_lstm.pt"),
                    help="PyTorch model to convert (.pt state_dict or .pt2)")
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "build", "demo"),
                    help="where the converted .lstm file goes")
    ap.add_argument("--steps", type=int, default=3000, help="samples to stream")
    ap.add_argument("--warmup", type=int, default=200, help="steps left out of the latency stats")
    args = ap.parse_args()
    if args.steps < STUCK_FROM + STUCK_LEN + 50:
        ap.error(f"--steps must be at least {STUCK_FROM + STUCK_LEN + 50}")

    # 1. convert --------------------------------------------------------------------
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, "sensor_lstm.lstm")
    print(f"== converting {_show(args.source)} -> {_show(path)}")
    convert(args.source, path)

    # 2. load and stream ------------------------------------------------------------
    t0 = time.perf_counter()
    m = lstm_infer.load(path)
    load_ms = (time.perf_counter() - t0) * 1e3
    print(f"\n== loaded {_show(path)} in {load_ms:.1f} ms: input {m.input_size} -> output "
          f"{m.output_size}, {m.graph.param_count():,} parameters, {m.file_size:,} bytes")

    signal = sensor_signal(args.steps, seed=2024)
    truth = signal.copy()
    signal[SPIKE_AT] += SPIKE
    signal[STUCK_FROM:STUCK_FROM + STUCK_LEN] = signal[STUCK_FROM - 1]
    signal[DROPOUT_AT] = np.nan

    s = m.stream()
    x = np.zeros(1, np.float32)
    fed = np.zeros(args.steps, np.float32)     # what the model actually saw
    pred = np.zeros(args.steps, np.float32)    # pred[k]: prediction of sample k+1
    times = np.zeros(args.steps, np.int64)
    clock = time.perf_counter_ns
    notes = []
    print(f"\n== streaming {args.steps} samples one step at a time "
          f"(spike at {SPIKE_AT}, stuck sensor {STUCK_FROM}-{STUCK_FROM + STUCK_LEN - 1}, "
          f"NaN at {DROPOUT_AT})")
    print(f"{'step':>6} {'actual':>9} {'predicted':>10} {'error':>8}")
    for k in range(args.steps):
        x[0] = signal[k]
        t = clock()
        try:
            y = s.step(x)
        except ValueError:
            # Dropped reading: the stream refused it and its state is untouched.
            # Fill in the model's own prediction for this sample and carry on.
            notes.append(f"step {k}: NaN reading rejected by the stream (state untouched); "
                         f"filled in with the prediction {pred[k - 1]:+.3f}")
            x[0] = pred[k - 1]
            t = clock()
            y = s.step(x)
        times[k] = clock() - t
        fed[k] = x[0]
        pred[k] = y[0]
        if k % 500 == 0 and k > 0:
            print(f"{k:6d} {signal[k]:9.3f} {pred[k - 1]:10.3f} {signal[k] - pred[k - 1]:8.3f}")

    # 3. anomalies: |sample - its prediction| above a threshold calibrated on clean data -----
    resid = np.abs(fed[1:] - pred[:-1])                  # resid[k-1] is for sample k
    calib = resid[100:1000]
    threshold = 6.0 * float(np.sqrt(np.mean(calib ** 2)))
    settle = 50  # the first samples have too little history to predict from
    flagged = [k + 1 for k in np.flatnonzero(resid > threshold) if k + 1 >= settle]
    print(f"\n== anomalies (|actual - predicted| > {threshold:.3f}, 6x the RMSE of steps "
          f"100-1000, {float(np.sqrt(np.mean(calib ** 2))):.3f}; from step {settle} on)")
    for n in notes:
        print("  " + n)
    for a, b in events(flagged):
        where = _cause(a, b)
        span = f"step {a}" if a == b else f"steps {a}-{b}"
        worst = max(range(a, b + 1), key=lambda j: resid[j - 1])
        print(f"  {span:<16} max error {resid[worst - 1]:.3f}  ({where})")
    clean = np.abs(truth[1:] - pred[:-1])
    normal = np.ones(args.steps - 1, bool)
    for a, b in ((SPIKE_AT - 1, SPIKE_AT + 10), (STUCK_FROM - 1, STUCK_FROM + STUCK_LEN + 20),
                 (DROPOUT_AT - 1, DROPOUT_AT + 5)):
        normal[a:b] = False
    print(f"  prediction RMSE on normal samples: {float(np.sqrt(np.mean(clean[normal] ** 2))):.4f}")

    png = os.path.join(args.out_dir, "sensor_anomalies.png")
    how = save_plot(png, fed, pred, resid, threshold, flagged)
    print(f"  saved {_show(png)} ({how})")

    # the streamed outputs equal a whole-sequence run over the same inputs
    diff = float(np.abs(m.run(fed[:, None])[:, 0] - pred).max())
    print(f"  stream vs run() on the same {args.steps} inputs: max abs difference {diff:.2e}")

    # 4. latency --------------------------------------------------------------------
    us = times[args.warmup:] / 1e3
    print(f"\n== latency of stream.step() from Python ({len(us)} steps after {args.warmup} "
          f"warm-up)")
    print(f"  median {np.median(us):.2f} µs   p99 {np.percentile(us, 99):.2f} µs   "
          f"max {us.max():.1f} µs   ({1e6 / us.mean():,.0f} steps/s)")
    print(f"  first step of this stream: {times[0] / 1e3:.1f} µs (kernels already loaded by the "
          f"verification above)")
    fresh = first_call_in_fresh_process(path)
    if fresh:
        print(f"  in a fresh process: import lstm_infer {fresh['import_ms']:.0f} ms, load "
              f"{fresh['load_ms']:.1f} ms, first step {fresh['first_step_ms']:.1f} ms (kernels "
              f"loaded from the Numba cache, or compiled on a cold one: run `lstm-infer compile` "
              f"once after installing), second step {fresh['second_step_us']:.1f} µs")


if __name__ == "__main__":
    main()
