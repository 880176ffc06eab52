"""One-step-ahead volatility forecasting from a return stream, one tick at a time.

    python examples/volatility.py        # no arguments, numpy + lstm-infer only

Loads examples/models/volatility_gru.lstm (a one-layer GRU with 16 units and a linear head,
trained in PyTorch by examples/train_volatility.py and converted with convert_torch), makes a
fresh regime-switching GARCH(1,1) return series (synthetic_returns.py) and feeds it to
`stream().step()` one return at a time: each step takes (r_t, log(r_t^2 + 0.01)) and returns
the log variance forecast for r_{t+1}. The baseline is RiskMetrics EWMA,
s^2_{t+1} = 0.94 s^2_t + 0.06 r_t^2. Both are scored against the true GARCH conditional
variance (QLIKE, MSE of variance, correlation of volatilities) and against the squared next
return, the proxy one has in practice (QLIKE as log s^2 + r^2 / s^2; the true variance is
the floor there). Prints per-step latency (median / p99 after warm-up) and saves
volatility.png (in the current directory): returns, true conditional volatility, model and
EWMA forecasts. Drawn with matplotlib when installed, else a plain line chart written by the
numpy PNG writer of convlstm_moving_shapes.py.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from synthetic_returns import features, garch_returns  # noqa: E402

import lstm_infer  # noqa: E402

MODEL = os.path.join(HERE, "models", "volatility_gru.lstm")
STEPS = 5000       # streamed returns
SEED = 2024        # the series (the model trained on other seeds)
LAMBDA = 0.94      # RiskMetrics decay
SKIP = 50          # first forecasts left out of the scores (neither method has history yet)
WARMUP = 20        # first steps left out of the latency statistics


def ewma(r: np.ndarray, lam: float = LAMBDA, init_n: int = 20) -> np.ndarray:
    """f[t]: the EWMA variance forecast for r[t+1] made after seeing r[0..t]; started from the
    mean of the first init_n squared returns."""
    f = np.empty(len(r))
    v = float(np.mean(r[:init_n].astype(np.float64) ** 2))
    for t, x in enumerate(r.astype(np.float64)):
        v = lam * v + (1 - lam) * x * x
        f[t] = v
    return f


def scores(f: np.ndarray, h: np.ndarray, r_next: np.ndarray) -> dict:
    """f: variance forecasts, h: true variances, r_next: realised returns, all for the same
    steps."""
    q = h / f
    return {"qlike": float(np.mean(q - np.log(q) - 1)),
            "mse": float(np.mean((f - h) ** 2)),
            "corr": float(np.corrcoef(np.sqrt(f), np.sqrt(h))[0, 1]),
            "qlike_r2": float(np.mean(np.log(f) + r_next ** 2 / f))}


def save_plot(path: str, r, sig, f_model, f_ewma) -> str:
    t = np.arange(len(r))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _save_plain(path, r, sig, f_model, f_ewma)
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(11, 6), sharex=True,
                                 gridspec_kw={"height_ratios": [1, 1.4]})
    a1.plot(t, r, lw=0.5, color="0.4")
    a1.set_ylabel("return, %")
    a1.set_title("regime-switching GARCH(1,1) returns, streamed one tick at a time")
    a2.plot(t, sig, lw=1.6, color="black", label="true conditional vol")
    a2.plot(t, np.sqrt(f_model), lw=1.0, color="tab:red", label="GRU forecast (lstm-infer)")
    a2.plot(t, np.sqrt(f_ewma), lw=1.0, color="tab:blue", alpha=0.8, label="EWMA, lambda 0.94")
    a2.set_ylabel("volatility, %")
    a2.set_xlabel("step")
    a2.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return "matplotlib"


def _save_plain(path: str, r, sig, f_model, f_ewma) -> str:
    """Without matplotlib: grey-scale panels (returns on top; below, true vol black, model
    dark grey, EWMA light grey) drawn as line pixels into an array."""
    from convlstm_moving_shapes import write_png
    W, H = 1000, 160
    img = np.ones((2 * H + 10, W), np.float32)
    cols = np.linspace(0, len(r) - 1, W).astype(int)

    def draw(y, top, lo, hi, shade):
        rows = top + H - 1 - np.clip((y[cols] - lo) / (hi - lo) * (H - 1), 0, H - 1).astype(int)
        for c in range(W - 1):
            a, b = sorted((rows[c], rows[c + 1]))
            img[a:b + 1, c] = np.minimum(img[a:b + 1, c], shade)
    m = float(np.abs(r).max())
    draw(r, 0, -m, m, 0.4)
    hi = float(max(sig.max(), np.sqrt(f_model).max(), np.sqrt(f_ewma).max()))
    draw(np.sqrt(f_ewma), H + 10, 0, hi, 0.75)
    draw(np.sqrt(f_model), H + 10, 0, hi, 0.45)
    draw(sig, H + 10, 0, hi, 0.0)
    write_png(path, img)
    return "numpy PNG writer"


def main() -> int:
    model = lstm_infer.load(MODEL)
    print(model)
    r, sig, regime = garch_returns(STEPS + 1, seed=SEED)
    X = features(r[:-1])
    stream = model.stream()
    logvar = np.empty(STEPS)
    ns = np.empty(STEPS, np.int64)
    for t in range(STEPS):
        t0 = time.perf_counter_ns()
        y = stream.step(X[t])               # return t in, log variance forecast for t+1 out
        ns[t] = time.perf_counter_ns() - t0
        logvar[t] = float(np.asarray(y).reshape(-1)[0])
    us = ns[WARMUP:] / 1e3
    print(f"per-step latency over {STEPS - WARMUP} ticks: median {np.median(us):.1f} us, "
          f"p99 {np.percentile(us, 99):.1f} us (first step {ns[0] / 1e6:.1f} ms)")

    f_model = np.exp(logvar)                # forecasts for r[1..STEPS]
    f_ewma = ewma(r[:-1])
    h = sig[1:].astype(np.float64) ** 2     # true conditional variance of r[1..STEPS]
    rn = r[1:].astype(np.float64)
    s = slice(SKIP, None)
    res = {"GRU (lstm-infer)": scores(f_model[s], h[s], rn[s]),
           "EWMA lambda=0.94": scores(f_ewma[s], h[s], rn[s]),
           "true GARCH variance": scores(h[s], h[s], rn[s])}
    n_shift = int(np.count_nonzero(np.diff(regime)))
    print(f"\n{STEPS - SKIP} one-step-ahead forecasts (seed {SEED}, {n_shift} regime shifts); "
          "against the true conditional variance, and against the squared next return")
    print(f"{'forecast':22s} {'QLIKE':>8s} {'MSE var':>9s} {'corr vol':>9s} {'QLIKE r^2':>10s}")
    for name, d in res.items():
        print(f"{name:22s} {d['qlike']:8.4f} {d['mse']:9.3f} {d['corr']:9.3f} "
              f"{d['qlike_r2']:10.4f}")
    m, e = res["GRU (lstm-infer)"], res["EWMA lambda=0.94"]
    print(f"QLIKE vs true variance: model {m['qlike']:.4f}, EWMA {e['qlike']:.4f} "
          f"({e['qlike'] / m['qlike']:.1f}x lower loss)")
    how = save_plot("volatility.png", r[1:], sig[1:], f_model, f_ewma)
    print(f"saved volatility.png ({how}): returns; true conditional volatility, GRU and EWMA "
          "forecasts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
