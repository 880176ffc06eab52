"""Multi-step forecasting of a seasonal series with a stacked LSTM, streamed one hour at a time.

    python examples/forecasting.py        # no arguments, numpy + lstm-infer only

Loads examples/models/forecasting_lstm.lstm (nn.LSTM 5->32, two layers, then Linear 32->24 on
every step; trained in PyTorch by examples/train_forecasting.py and converted with
convert_torch), makes a fresh hourly test series (trend + daily and weekly seasonality +
noise, seasonal_series.py) and feeds it to `stream().step()` hour by hour. Each step's output
is the forecast of the next 24 hours. At forecast origins (every 6 hours after a warm-up
week) it compares that forecast with what actually followed and with the seasonal-naive
forecast (the value one season, 24 hours, earlier: y[t+h-24]), and prints MAE and RMSE per
horizon bucket (1-6, 7-12, 13-24 hours ahead), the per-step latency (median / p99), and saves
forecasting.png (in the current directory): the last week of history, the actual next 24
hours, the model forecast and the naive forecast. The PNG is drawn with matplotlib when
installed, else by the small numpy PNG writer of convlstm_moving_shapes.py.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from seasonal_series import CENTER, DAY, SCALE, WEEK, features, seasonal_series  # noqa: E402

import lstm_infer  # noqa: E402

MODEL = os.path.join(HERE, "models", "forecasting_lstm.lstm")
H = 24                  # forecast horizon (the model's 24 outputs)
SEASON = DAY            # seasonal-naive period
HOURS = 6 * WEEK        # streamed test series length
WARMUP = WEEK           # first week: the state warms up; no forecasts scored, no latency kept
EVERY = 6               # a forecast origin every EVERY hours after the warm-up
BUCKETS = ((1, 6), (7, 12), (13, 24))
SEED = 20240601         # the test series (training used other seeds)


def draw_numpy(path: str, lines: list[tuple[np.ndarray, np.ndarray, float]]) -> None:
    """Minimal fallback plot: each (x, y, grey level) line rasterised on a white canvas."""
    from convlstm_moving_shapes import write_png
    Wd, Ht, pad = 720, 240, 10
    xs = np.concatenate([x for x, _, _ in lines])
    ys = np.concatenate([y for _, y, _ in lines])
    img = np.ones((Ht, Wd), np.float32)
    for x, y, grey in lines:
        xi = np.interp(x, (xs.min(), xs.max()), (pad, Wd - pad))
        yi = np.interp(y, (ys.min(), ys.max()), (Ht - pad, pad))
        for k in range(len(x) - 1):
            n = int(max(abs(xi[k + 1] - xi[k]), abs(yi[k + 1] - yi[k]))) + 1
            px = np.linspace(xi[k], xi[k + 1], n).astype(int)
            py = np.linspace(yi[k], yi[k + 1], n).astype(int)
            img[py, px] = grey
    write_png(path, img)


def save_plot(path: str, t_hist, y_hist, t_fut, y_fut, f_model, f_naive) -> str:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        draw_numpy(path, [(t_hist, y_hist, 0.0), (t_fut, y_fut, 0.0),
                          (t_fut, f_model, 0.35), (t_fut, f_naive, 0.7)])
        return "numpy PNG writer"
    fig, ax = plt.subplots(figsize=(10, 3.6), dpi=90)
    ax.plot(t_hist, y_hist, color="0.45", lw=1, label="history")
    ax.plot(t_fut, y_fut, color="black", lw=1.6, label="actual")
    ax.plot(t_fut, f_model, color="tab:blue", lw=1.8, label="LSTM forecast")
    ax.plot(t_fut, f_naive, color="tab:orange", lw=1.2, ls="--", label="seasonal naive (t-24)")
    ax.axvline(t_fut[0] - 0.5, color="0.7", lw=0.8)
    ax.set_xlabel("hour")
    ax.set_title("24-hour forecast from one origin (streamed LSTM vs seasonal naive)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", ncol=4)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return "matplotlib"


def main() -> int:
    model = lstm_infer.load(MODEL)
    print(model)
    y, t = seasonal_series(HOURS, seed=SEED)
    X = features(y, t)
    stream = model.stream()
    fc = np.empty((HOURS, H), np.float32)      # fc[s] = forecast of y[s+1..s+24] made at step s
    ns = np.empty(HOURS, np.int64)
    for s in range(HOURS):
        t0 = time.perf_counter_ns()
        out = stream.step(X[s])
        ns[s] = time.perf_counter_ns() - t0
        fc[s] = np.asarray(out) * SCALE + CENTER
    us = ns[WARMUP:] / 1e3
    print(f"per-step latency over {HOURS - WARMUP} steps: median {np.median(us):.0f} us, "
          f"p99 {np.percentile(us, 99):.0f} us (first step {ns[0] / 1e6:.1f} ms)")

    origins = np.arange(WARMUP, HOURS - H, EVERY)
    h = np.arange(1, H + 1)
    actual = y[origins[:, None] + h]                        # (n, 24)
    model_f = fc[origins]                                   # (n, 24)
    naive_f = y[origins[:, None] + h - SEASON]              # same hour one season earlier
    weekly_f = y[origins[:, None] + h - WEEK]               # same hour one week earlier
    e_m, e_n, e_w = model_f - actual, naive_f - actual, weekly_f - actual
    print(f"\n{len(origins)} forecast origins (every {EVERY} h over {len(y) - WARMUP} h after a "
          f"{WARMUP} h warm-up), horizon {H} h; series std {y.std():.2f}")
    print(f"{'horizon':>9} | {'MAE model':>9} {'MAE naive':>9} | {'RMSE model':>10} "
          f"{'RMSE naive':>10} | {'MAE gain':>8}")
    for a, b in BUCKETS:
        k = slice(a - 1, b)
        mm, mn = np.abs(e_m[:, k]).mean(), np.abs(e_n[:, k]).mean()
        rm, rn = np.sqrt((e_m[:, k] ** 2).mean()), np.sqrt((e_n[:, k] ** 2).mean())
        print(f"{f'{a}-{b}':>9} | {mm:9.3f} {mn:9.3f} | {rm:10.3f} {rn:10.3f} | "
              f"{100 * (1 - mm / mn):7.1f}%")
    mae_m, mae_n, mae_w = (float(np.abs(e).mean()) for e in (e_m, e_n, e_w))
    rm, rn = np.sqrt((e_m ** 2).mean()), np.sqrt((e_n ** 2).mean())
    print(f"{'all':>9} | {mae_m:9.3f} {mae_n:9.3f} | {rm:10.3f} {rn:10.3f} | "
          f"{100 * (1 - mae_m / mae_n):7.1f}%")
    print(f"overall MAE: model {mae_m:.4f}, seasonal-naive {mae_n:.4f} "
          f"({100 * (1 - mae_m / mae_n):.1f}% lower); weekly-naive (t-168) {mae_w:.4f}")

    o = origins[len(origins) // 2 + 3]           # one origin for the figure
    th = np.arange(o - WEEK + 1, o + 1)
    tf = o + h
    how = save_plot("forecasting.png", th, y[th], tf, y[tf], fc[o], y[tf - SEASON])
    print(f"saved forecasting.png ({how}): history to hour {o}, actual / model / naive for "
          f"hours {o + 1}..{o + H}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
