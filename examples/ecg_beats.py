"""Heartbeat classification (normal / premature atrial / premature ventricular) on a streamed
ECG, one 250 Hz sample per step.

    python examples/ecg_beats.py        # no arguments, numpy + lstm-infer only

Loads examples/models/ecg_beats_gru.lstm (a one-layer GRU with 32 units and a linear head,
trained in PyTorch by examples/train_ecg_beats.py and converted with convert_torch), makes a
fresh five-minute synthetic recording (synthetic_ecg.py: ECGSYN-style beats with RR
variability, baseline wander, mains hum and noise) and feeds it to `stream().step()` one
sample at a time: each step takes (sample, slope) and returns N / S / V scores of the latest
beat. A beat is read 160 ms after its annotated R peak (ecg_scoring.READ). The baseline is
the RR-interval prematurity rule (ecg_scoring.rr_rule), which must wait for the next beat.
Prints the confusion matrices and per-class sensitivity / positive predictive value (AAMI
EC57's Se and +P), how soon after the R peak each decision is made, the agreement of the
streamed scores with `Model.run` on the whole recording, and the per-step latency (median /
p99 after warm-up, and as a fraction of the 4 ms sample period). Saves ecg_beats.png (in the
current directory): an ECG strip with each beat coloured by the model's class, the reference
and RR-rule classes above it. Drawn with matplotlib when installed, else in grey by the numpy
PNG writer of convlstm_moving_shapes.py.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from ecg_scoring import READ, confusion, f1, read_beats, rr_rule, se_ppv  # noqa: E402
from synthetic_ecg import CLASSES, FS, features, synthetic_ecg  # noqa: E402

import lstm_infer  # noqa: E402

MODEL = os.path.join(HERE, "models", "ecg_beats_gru.lstm")
SECONDS = 300      # the streamed recording
SEED = 2024        # the recording (the model trained on other seeds)
WARMUP = 50        # first steps left out of the latency statistics
STRIP = 12.0       # seconds of ECG in the picture
COLOURS = {0: "tab:green", 1: "tab:orange", 2: "tab:red"}


def settle_latency(scores: np.ndarray, r_idx: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per beat, samples from the R peak to the first sample from which the model's argmax
    equals its read-out class up to the read-out point: when the decision was in fact made
    (0 when it already held at the R peak, as for a normal beat after a normal one)."""
    arg = np.argmax(scores, axis=1)
    out = np.empty(len(r_idx), np.int64)
    for k, r in enumerate(r_idx):
        end = min(r + READ, len(arg) - 1)
        wrong = np.nonzero(arg[r:end + 1] != pred[k])[0]
        out[k] = 0 if len(wrong) == 0 else wrong[-1] + 1
    return out


def print_scores(name: str, m: np.ndarray) -> None:
    se, ppv = se_ppv(m)
    print(f"\n{name}: rows reference, columns predicted")
    print("      " + "".join(f"{c:>7s}" for c in CLASSES) + "    Se     +P")
    for i, c in enumerate(CLASSES):
        print(f"  {c:3s} " + "".join(f"{v:7d}" for v in m[i]) + f"  {se[i]:5.3f}  {ppv[i]:5.3f}")


def best_strip(r_idx: np.ndarray, label: np.ndarray, n: int) -> int:
    """Start sample of the STRIP-second window with the most ectopic beats of both kinds."""
    w = int(STRIP * FS)
    best, start = -1, 0
    for s in range(0, n - w, FS):
        inside = label[(r_idx >= s + FS // 2) & (r_idx < s + w - FS // 2)]
        score = min(np.sum(inside == 1), 2) + min(np.sum(inside == 2), 2) * 1.01
        if score > best:
            best, start = score, s
    return start


def save_plot(path: str, ecg, r_idx, truth, pred, rr_pred, start: int) -> str:
    w = int(STRIP * FS)
    sel = (r_idx >= start) & (r_idx < start + w)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _save_plain(path, ecg[start:start + w], r_idx[sel] - start, truth[sel], pred[sel])
    t = np.arange(start, start + w) / FS
    fig, ax = plt.subplots(figsize=(12, 3.6))
    ax.plot(t, ecg[start:start + w], lw=0.6, color="0.65")
    top = float(ecg[start:start + w].max())
    for r, y, p, b in zip(r_idx[sel], truth[sel], pred[sel], rr_pred[sel]):
        lo, hi = max(r - FS // 4, start), min(r + int(0.45 * FS), start + w)
        ax.plot(np.arange(lo, hi) / FS, ecg[lo:hi], lw=1.1, color=COLOURS[int(p)])
        ax.text(r / FS, top + 0.45, CLASSES[y], ha="center", fontsize=9, weight="bold")
        ax.text(r / FS, top + 0.2, CLASSES[b], ha="center", fontsize=8, color="0.4")
    for k, c in COLOURS.items():
        ax.plot([], [], color=c, label=f"GRU: {CLASSES[k]}")
    ax.set_ylim(float(ecg[start:start + w].min()) - 0.2, top + 0.7)
    ax.set_xlabel("time, s")
    ax.set_ylabel("mV")
    ax.set_title("synthetic ECG streamed one sample at a time: beats coloured by the GRU's "
                 "class; above, the reference (bold) and the RR rule (grey)\n"
                 "N normal, S premature atrial, V premature ventricular", fontsize=9)
    ax.legend(loc="lower right", fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return "matplotlib"


def _save_plain(path: str, ecg, r_idx, truth, pred) -> str:
    """Without matplotlib: the ECG as a black line; under each beat two marks, reference
    above, model below: light grey for N, grey for S, black for V."""
    from convlstm_moving_shapes import write_png
    W, H = 1000, 200
    img = np.ones((H + 40, W), np.float32)
    cols = np.linspace(0, len(ecg) - 1, W).astype(int)
    lo, hi = float(ecg.min()), float(ecg.max())
    rows = H - 1 - np.clip((ecg[cols] - lo) / (hi - lo) * (H - 1), 0, H - 1).astype(int)
    for c in range(W - 1):
        a, b = sorted((rows[c], rows[c + 1]))
        img[a:b + 1, c] = 0.0
    shade = {0: 0.85, 1: 0.5, 2: 0.0}
    for r, y, p in zip(r_idx, truth, pred):
        c = int(r / max(len(ecg) - 1, 1) * (W - 1))
        img[H + 8:H + 20, max(c - 6, 0):c + 6] = shade[int(y)]
        img[H + 24:H + 36, max(c - 6, 0):c + 6] = shade[int(p)]
    write_png(path, img)
    return "numpy PNG writer"


def main() -> int:
    model = lstm_infer.load(MODEL)
    print(model)
    rec = synthetic_ecg(SECONDS, seed=SEED)
    X = features(rec.ecg)
    stream = model.stream()
    scores = np.empty((len(X), 3), np.float32)
    ns = np.empty(len(X), np.int64)
    for t in range(len(X)):
        t0 = time.perf_counter_ns()
        y = stream.step(X[t])               # one ECG sample in, N / S / V scores out
        ns[t] = time.perf_counter_ns() - t0
        scores[t] = np.asarray(y).reshape(-1)
    us = ns[WARMUP:] / 1e3
    med, p99 = float(np.median(us)), float(np.percentile(us, 99))
    print(f"per-step latency over {len(X) - WARMUP} samples: median {med:.1f} us, "
          f"p99 {p99:.1f} us (first step {ns[0] / 1e6:.1f} ms); that is {med / 40:.2f} % "
          f"(p99 {p99 / 40:.2f} %) of the 4 ms sample period")
    whole = np.asarray(model.run(X)).reshape(len(X), 3)
    print(f"streamed vs Model.run on the whole recording: max abs diff "
          f"{float(np.max(np.abs(whole - scores))):.2e}")

    truth = rec.label.astype(np.int64)
    pred = read_beats(scores, rec.r_idx)
    base = rr_rule(rec.r_idx, FS)
    counts = np.bincount(truth, minlength=3)
    print(f"\n{len(truth)} beats in {SECONDS} s (seed {SEED}, {rec.hr:.0f} bpm): "
          + ", ".join(f"{c} {n}" for c, n in zip(CLASSES, counts)))
    m_model, m_base = confusion(truth, pred), confusion(truth, base)
    print_scores("GRU (lstm-infer), read 160 ms after the R peak", m_model)
    print_scores("RR-interval rule (prematurity + compensatory pause)", m_base)
    print(f"\nventricular F1: model {f1(m_model, 2):.3f}, RR rule {f1(m_base, 2):.3f}")
    print(f"supraventricular F1: model {f1(m_model, 1):.3f}, RR rule {f1(m_base, 1):.3f}")
    lat = settle_latency(scores, rec.r_idx, pred) * 1000 / FS
    post = np.diff(rec.r_idx) * 1000 / FS
    print(f"\ndecision latency after the R peak: the model is read at {READ * 1000 // FS} ms; "
          f"the RR rule waits for the next beat, median {np.median(post):.0f} ms")
    for k, name in ((2, "V"), (1, "S")):
        hit = (truth == k) & (pred == k)
        if hit.any():
            print(f"  correctly called {name} beats: the model's class settled (and stayed) "
                  f"median {np.median(lat[hit]):.0f} ms, max {np.max(lat[hit]):.0f} ms after R")
    start = best_strip(rec.r_idx, truth, len(X))
    how = save_plot("ecg_beats.png", rec.ecg, rec.r_idx, truth, pred, base, start)
    print(f"saved ecg_beats.png ({how}): {STRIP:.0f} s ECG strip from {start / FS:.0f} s, beats "
          "coloured by the model's class, reference and RR-rule classes above")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
