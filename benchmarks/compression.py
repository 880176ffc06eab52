"""fp32 vs fp16 vs int8 weights: file size, resident memory, accuracy over long streams,
decision agreement on the bundled example model, and per-step speed.

    python -m benchmarks.compression [--quick]

Writes benchmarks/results/compression.json and compression.md. Every number comes from
this run on this machine; timings are medians of several rounds (the machine is noisy).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

import lstm_infer
from lstm_infer.builder import GraphBuilder
from lstm_infer.quantize import quantize_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
DTYPES = ("fp32", "fp16", "int8")


def random_model(path: str, op: str, I: int, H: int, layers: int, seed: int = 0) -> None:
    """Recurrent stack + Linear head with PyTorch-style U(-1/sqrt(H), 1/sqrt(H)) weights."""
    rng = np.random.default_rng(seed)
    G = {"LSTM": 4, "GRU": 3}[op] * H
    s = 1 / np.sqrt(H)
    u = lambda *shape: rng.uniform(-s, s, size=shape).astype(np.float32)  # noqa: E731
    b = GraphBuilder("x", I)
    v, size = "x", I
    for k in range(layers):
        if op == "LSTM":
            v = b.add("LSTM", f"lstm{k}", [v], {"input_size": size, "hidden_size": H, "proj_size": 0,
                                                "reverse": False},
                      {"W_ih": u(size, G), "W_hh": u(H, G), "bias": u(G)})
        else:
            v = b.add("GRU", f"gru{k}", [v], {"input_size": size, "hidden_size": H, "reverse": False},
                      {"W_ih": u(size, G), "W_hh": u(H, G), "b_ih": u(G), "b_hh": u(G)})
        size = H
    b.output(b.add("Linear", "head", [v], {"in_features": H, "out_features": 8},
                   {"W": u(H, 8), "bias": u(8)}))
    b.save(path, converter="benchmarks.compression")


def variants(fp32_path: str, d: str) -> dict[str, str]:
    out = {"fp32": fp32_path}
    for dt in ("fp16", "int8"):
        out[dt] = os.path.join(d, f"{os.path.basename(fp32_path)[:-5]}.{dt}.lstm")
        quantize_file(fp32_path, out[dt], dt)
    return out


_RSS_CHILD = """
import sys, numpy as np, lstm_infer
def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * 4096
tiny = lstm_infer.load(sys.argv[1])          # kernels loaded before measuring
r0 = rss()
m = lstm_infer.load(sys.argv[2])
s = m.stream(); s.step_many(np.zeros((4, m.input_size), np.float32))
print(rss() - r0)
"""


def resident_bytes(tiny: str, path: str) -> int:
    """Resident memory a loaded model adds to a process (weights + buffers), fresh process."""
    out = subprocess.run([sys.executable, "-c", _RSS_CHILD, tiny, path], capture_output=True,
                         text=True, check=True, cwd=ROOT)
    return int(out.stdout.strip().splitlines()[-1])


def per_step_us(path: str, steps: int, rounds: int) -> tuple[float, float]:
    """(median stream.step latency, step_many cost per step) in µs, medians over rounds."""
    m = lstm_infer.load(path)
    s = m.stream()
    X = np.random.default_rng(0).standard_normal((steps, m.input_size)).astype(np.float32)
    out = np.empty(m.output_size, np.float32)
    step_t, chunk_t = [], []
    clock = time.perf_counter_ns
    for _ in range(rounds):
        ts = np.empty(steps, np.int64)
        for k in range(steps):
            t = clock()
            s.step(X[k], out=out)
            ts[k] = clock() - t
        step_t.append(np.median(ts) / 1e3)
        t = clock()
        s.step_many(X)
        chunk_t.append((clock() - t) / steps / 1e3)
    return float(np.median(step_t)), float(np.median(chunk_t))


def long_stream_error(paths: dict[str, str], steps: int) -> dict:
    """Max and mean |y - y_fp32| over one long stream with state carried (10000 steps)."""
    X = np.random.default_rng(1).standard_normal((steps, lstm_infer.load(paths["fp32"]).input_size))
    X = X.astype(np.float32)
    ref = lstm_infer.load(paths["fp32"]).stream().step_many(X)
    res = {}
    for dt in ("fp16", "int8"):
        y = lstm_infer.load(paths[dt]).stream().step_many(X)
        err = np.abs(y - ref)
        res[dt] = {"max_abs": float(err.max()), "mean_abs": float(err.mean()),
                   "max_abs_last_1000": float(err[-1000:].max())}
    return res


def example_model_agreement(d: str, steps: int) -> dict:
    """The bundled sensor model: do int8/fp16 raise the same anomaly flags as fp32?"""
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    from synthetic_sensor import sensor_signal

    import converters
    src = os.path.join(ROOT, "examples", "models", "sensor_lstm.pt")
    fp32 = os.path.join(d, "sensor.lstm")
    converters.convert_file(src, fp32, verify=False)
    paths = variants(fp32, d)
    sig = sensor_signal(steps, seed=7)
    rng = np.random.default_rng(7)
    for k in rng.choice(np.arange(200, steps), size=steps // 500, replace=False):
        sig[k] += rng.choice([-1, 1]) * rng.uniform(0.5, 2.5)  # injected anomalies
    preds = {dt: lstm_infer.load(p).stream().step_many(sig[:, None])[:, 0] for dt, p in paths.items()}
    resid = {dt: np.abs(sig[1:] - p[:-1]) for dt, p in preds.items()}
    threshold = 6.0 * float(np.sqrt(np.mean(resid["fp32"][100:1000] ** 2)))  # as examples/demo.py
    flags = {dt: r > threshold for dt, r in resid.items()}
    out = {"steps": steps, "threshold": threshold, "fp32_flags": int(flags["fp32"].sum())}
    for dt in ("fp16", "int8"):
        out[dt] = {"flag_agreement": float(np.mean(flags[dt] == flags["fp32"])),
                   "flags": int(flags[dt].sum()),
                   "prediction_max_abs_diff": float(np.abs(preds[dt] - preds["fp32"]).max()),
                   "prediction_rmse_vs_signal": float(np.sqrt(np.mean(resid[dt][:, None] ** 2)))}
    out["fp32"] = {"prediction_rmse_vs_signal": float(np.sqrt(np.mean(resid["fp32"] ** 2)))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two shapes, fewer steps (about a minute)")
    args = ap.parse_args()
    shapes = [(16, 64), (256, 512)] if args.quick else [(16, 64), (64, 128), (128, 256), (256, 512)]
    steps, rounds, long_steps = (500, 3, 2000) if args.quick else (2000, 5, 10000)
    os.makedirs(RESULTS, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tiny = os.path.join(d, "tiny.lstm")
        random_model(tiny, "LSTM", 2, 4, 1)
        for op in ("LSTM", "GRU"):
            for I, H in shapes:
                fp32 = os.path.join(d, f"{op}_{I}_{H}.lstm")
                random_model(fp32, op, I, H, layers=1)
                paths = variants(fp32, d)
                row = {"model": f"{op} ({I}, {H}) + Linear", "dtypes": {}}
                for dt in DTYPES:
                    step, chunk = per_step_us(paths[dt], steps, rounds)
                    row["dtypes"][dt] = {"file_bytes": os.path.getsize(paths[dt]),
                                         "resident_bytes": resident_bytes(tiny, paths[dt]),
                                         "step_us": step, "step_many_us": chunk}
                row["long_stream_error"] = long_stream_error(paths, long_steps)
                rows.append(row)
                print(json.dumps(row))
        example = example_model_agreement(d, long_steps)
        print(json.dumps(example))
    result = {"machine": {"cpu": _cpu(), "python": platform.python_version(),
                          "numpy": np.__version__, "lstm_infer": lstm_infer.__version__},
              "quick": args.quick, "models": rows, "example_model": example}
    with open(os.path.join(RESULTS, "compression.json"), "w") as f:
        json.dump(result, f, indent=2)
    with open(os.path.join(RESULTS, "compression.md"), "w") as f:
        f.write(markdown(result))
    print(markdown(result))


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def markdown(r: dict) -> str:
    kb = lambda b: f"{b / 1024:,.0f} KiB"  # noqa: E731
    lines = [f"Weights fp32 vs fp16 vs int8 ({r['machine']['cpu']}; medians; "
             f"{'quick run' if r['quick'] else 'full run'}).", "",
             "| model | file fp32 / fp16 / int8 | resident fp32 / fp16 / int8 | step() µs fp32 / fp16 / int8 "
             "| step_many µs/step fp32 / fp16 / int8 | max abs err vs fp32 over the stream: fp16 / int8 |",
             "|---|---|---|---|---|---|"]
    for row in r["models"]:
        d = row["dtypes"]
        e = row["long_stream_error"]
        lines.append(f"| {row['model']} | {' / '.join(kb(d[t]['file_bytes']) for t in DTYPES)} "
                     f"| {' / '.join(kb(d[t]['resident_bytes']) for t in DTYPES)} "
                     f"| {' / '.join(format(d[t]['step_us'], '.2f') for t in DTYPES)} "
                     f"| {' / '.join(format(d[t]['step_many_us'], '.2f') for t in DTYPES)} "
                     f"| {e['fp16']['max_abs']:.1e} / {e['int8']['max_abs']:.1e} |")
    ex = r["example_model"]
    lines += ["", f"Example sensor model (LSTM 1→32 + Linear), {ex['steps']} streamed steps with injected "
              f"anomalies, threshold {ex['threshold']:.3f} (6x the fp32 calibration RMSE): fp32 raises "
              f"{ex['fp32_flags']} flags; fp16 agrees with fp32 on {100 * ex['fp16']['flag_agreement']:.2f}% "
              f"of steps, int8 on {100 * ex['int8']['flag_agreement']:.2f}% ({ex['int8']['flags']} flags); "
              f"prediction max abs difference from fp32: fp16 {ex['fp16']['prediction_max_abs_diff']:.1e}, "
              f"int8 {ex['int8']['prediction_max_abs_diff']:.1e}; prediction RMSE vs the signal: fp32 "
              f"{ex['fp32']['prediction_rmse_vs_signal']:.4f}, int8 {ex['int8']['prediction_rmse_vs_signal']:.4f}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
