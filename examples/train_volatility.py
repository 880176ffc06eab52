"""Train the small GRU volatility forecaster that examples/volatility.py streams, and write
it as examples/models/volatility_gru.lstm.

    pip install -e '.[torch]'
    python examples/train_volatility.py [--seconds 45]

At each step the GRU (1 layer, 16 units, then Linear(16, 1)) reads the step's return and
log(r^2 + 0.01) (synthetic_returns.features) and outputs the log variance of the *next*
return. It trains on regime-switching GARCH(1,1) series (synthetic_returns.py) for a time
budget on one CPU thread with the Gaussian negative log-likelihood of the next return,
log s^2 + r^2 / s^2, which is QLIKE up to a constant, so the forecast it learns is the one
QLIKE rewards. It never sees the true conditional variance. `convert_torch` then writes the
file and checks it against torch.
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
from synthetic_returns import features, garch_returns  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

OUT = os.path.join(HERE, "models", "volatility_gru.lstm")
BURN_IN = 50     # steps at the start of a window left out of the loss (no history yet)


class VolGRU(nn.Module):
    """(B, T, 2) features -> (B, T, 1): at step t, the log variance forecast for r_{t+1}."""

    def __init__(self, hidden: int = 16):
        super().__init__()
        self.gru = nn.GRU(2, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)
        nn.init.constant_(self.head.bias, float(np.log(2.0)))

    def forward(self, x):
        out, _ = self.gru(x)
        return self.head(out)


def nll(logvar: torch.Tensor, r_next: torch.Tensor) -> torch.Tensor:
    return torch.mean(logvar + r_next ** 2 * torch.exp(-logvar))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=45.0, help="training time budget")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    # a pool of long series, sampled as random windows
    pool = [garch_returns(4000, rng=rng)[0] for _ in range(128)]
    X = torch.from_numpy(np.stack([features(r) for r in pool]))          # (S, N, 2)
    R = torch.from_numpy(np.stack(pool))                                 # (S, N)
    vr, vs, _ = garch_returns(20001, seed=999)
    vx = torch.from_numpy(features(vr[:-1])[None])
    model = VolGRU()
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    win, bs = 400, 32
    t0, it = time.perf_counter(), 0
    while time.perf_counter() - t0 < args.seconds:
        s = rng.integers(0, X.shape[0], bs)
        o = rng.integers(0, X.shape[1] - win - 1, bs)
        idx = torch.from_numpy(o[:, None] + np.arange(win)[None])
        x = X[torch.from_numpy(s)[:, None], idx]                         # (bs, win, 2)
        rn = R[torch.from_numpy(s)[:, None], idx + 1]                    # next returns
        loss = nll(model(x)[:, BURN_IN:, 0], rn[:, BURN_IN:])
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        it += 1
        if it % 100 == 0:
            with torch.no_grad():
                lv = model(vx)[0, BURN_IN:, 0]
            h = torch.from_numpy(vs[1 + BURN_IN:]).double() ** 2
            f = torch.exp(lv).double()
            q = float(torch.mean(h / f - torch.log(h / f) - 1))
            print(f"iter {it:5d}  {time.perf_counter() - t0:4.0f} s  train nll {loss.item():.4f}  "
                  f"val QLIKE vs true variance {q:.4f}", flush=True)
    model.eval()
    from converters import convert_torch
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    report = convert_torch(model, args.out, vx[:, :64])
    print(report)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
