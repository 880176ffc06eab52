"""Train the bundled example model: a small LSTM that predicts the next sample of a noisy
multi-sine sensor signal (CPU, deterministic, well under a minute).

    python examples/train_sensor_model.py

Writes examples/models/sensor_lstm.pt (a state_dict of standard modules) and
examples/models/sensor_lstm.pt2 (torch.export program), both a few tens of KB. Convert
either with `lstm-infer convert examples/models/sensor_lstm.pt -o sensor_lstm.lstm`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synthetic_sensor import NOISE, sensor_signal  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "models")


class SensorLSTM(nn.Module):
    """x (B, T, 1) -> prediction of the next sample (B, T, 1)."""

    def __init__(self, hidden: int = 32):
        super().__init__()
        self.lstm = nn.LSTM(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out)


def batch(rng: np.random.Generator, size: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    seqs = np.stack([sensor_signal(length + 1, seed=int(s))
                     for s in rng.integers(1_000, 1_000_000, size)])
    x = torch.from_numpy(seqs[:, :-1, None])
    y = torch.from_numpy(seqs[:, 1:, None])
    return x, y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1000, help="training iterations")
    ap.add_argument("--out-dir", default=MODELS)
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(min(4, torch.get_num_threads()))
    rng = np.random.default_rng(0)
    model = SensorLSTM()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    burn_in = 20  # the first steps of a sequence have no history to predict from
    t0 = time.perf_counter()
    for it in range(args.steps):
        x, y = batch(rng, 32, 200)
        loss = nn.functional.mse_loss(model(x)[:, burn_in:], y[:, burn_in:])
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if it % 200 == 0 or it == args.steps - 1:
            print(f"step {it:4d}  train RMSE {loss.item() ** 0.5:.4f}")
    train_s = time.perf_counter() - t0

    # Held-out signal, predicted in one pass from the initial state (as a stream would).
    model.eval()
    sig = sensor_signal(5001, seed=7)
    with torch.no_grad():
        pred = model(torch.from_numpy(sig[None, :-1, None]))[0, :, 0].numpy()
    err = pred[burn_in:] - sig[1 + burn_in:]
    naive = sig[burn_in:-1] - sig[1 + burn_in:]  # "next sample = this sample"
    rmse, naive_rmse = float(np.sqrt(np.mean(err ** 2))), float(np.sqrt(np.mean(naive ** 2)))
    print(f"trained in {train_s:.1f} s; held-out next-sample RMSE {rmse:.4f} "
          f"(noise floor {NOISE:.3f}, naive last-value baseline {naive_rmse:.4f}, "
          f"signal std {sig.std():.3f})")

    os.makedirs(args.out_dir, exist_ok=True)
    pt = os.path.join(args.out_dir, "sensor_lstm.pt")
    pt2 = os.path.join(args.out_dir, "sensor_lstm.pt2")
    torch.save(model.state_dict(), pt)
    # nn.LSTM specialises the time length during export, so the program is exported for
    # one example shape (batch 1, 64 steps); the converter reads the per-step graph from it.
    example = torch.from_numpy(sig[None, :64, None])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "_flat_weights assigned during export"
        ep = torch.export.export(model, (example,))
    torch.export.save(ep, pt2)
    for p in (pt, pt2):
        print(f"wrote {os.path.relpath(p)} ({os.path.getsize(p):,} bytes)")


if __name__ == "__main__":
    main()
