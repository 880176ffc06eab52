"""Train the stacked-LSTM 24-hour forecaster that examples/forecasting.py streams, and write
it as examples/models/forecasting_lstm.lstm.

    pip install -e '.[torch]'
    python examples/train_forecasting.py [--seconds 55]

Model: nn.LSTM(5 -> 32, two layers) then nn.Linear(32 -> 24) on every step. Step t reads the
scaled value y[t] and its calendar position (seasonal_series.features) and outputs the scaled
forecast of y[t+1..t+24] (multi-output "direct" forecasting: one head output per horizon).
It trains on fresh random series from seasonal_series.py for a time budget on one CPU thread
(Adam, MSE over all 24 horizons, the first week of each sequence left out of the loss as
warm-up), then `convert_torch` writes the file and checks it against torch.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from seasonal_series import CENTER, FEATURES, SCALE, WEEK, features, seasonal_series  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

OUT = os.path.join(HERE, "models", "forecasting_lstm.lstm")
H = 24              # forecast horizon (steps)
HIDDEN = 32
SEQ = 2 * WEEK      # steps per training sequence (inputs)
BURN_IN = WEEK // 2  # steps left out of the loss (the state has not seen enough yet)


class Forecaster(nn.Module):
    """(B, T, 5) -> (B, T, 24): at step t, the scaled forecast of y[t+1..t+24]."""

    def __init__(self, hidden: int = HIDDEN, layers: int = 2, horizon: int = H):
        super().__init__()
        self.lstm = nn.LSTM(FEATURES, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, horizon)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out)


def windows(y: np.ndarray, n_steps: int) -> np.ndarray:
    """(n_steps, H) scaled targets: row t is y[t+1..t+H]."""
    idx = np.arange(n_steps)[:, None] + 1 + np.arange(H)[None, :]
    return ((y[idx] - CENTER) / SCALE).astype(np.float32)


def batch(rng: np.random.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for s in rng.integers(1_000, 10_000_000, size):
        y, t = seasonal_series(SEQ + H, seed=int(s))
        xs.append(features(y[:SEQ], t[:SEQ]))
        ys.append(windows(y, SEQ))
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=55.0, help="training time budget")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    model = Forecaster()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xv, yv = batch(np.random.default_rng(123), 32)
    t0, it = time.perf_counter(), 0
    while time.perf_counter() - t0 < args.seconds:
        frac = (time.perf_counter() - t0) / args.seconds
        for g in opt.param_groups:                      # cosine decay over the time budget
            g["lr"] = 1e-2 * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(frac, 1.0))))
        x, y = batch(rng, 32)
        loss = nn.functional.mse_loss(model(x)[:, BURN_IN:], y[:, BURN_IN:])
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        it += 1
        if it % 25 == 0:
            with torch.no_grad():
                v = (model(xv)[:, BURN_IN:] - yv[:, BURN_IN:]).abs().mean().item() * SCALE
            print(f"iter {it:4d}  {time.perf_counter() - t0:5.1f} s  train mse {loss.item():.4f}  "
                  f"val MAE {v:.3f}", flush=True)
    model.eval()
    from converters import convert_torch
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    report = convert_torch(model, args.out, xv[:2, :64])
    print(report)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
