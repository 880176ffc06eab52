"""Train the small ConvLSTM next-frame predictor that examples/convlstm_moving_shapes.py
streams, and write it as examples/models/moving_shapes.lstm.

    pip install -e '.[torch]'
    python examples/train_convlstm_moving_shapes.py [--seconds 90]

The model is written the way PyTorch users write a ConvLSTM (one Conv2d over
cat([x, h], dim=1), split into i, f, o, g, looped over the frames in forward), two layers of
8 filters with 5x5 kernels, then a 1x1 Conv2d + sigmoid per frame: frame t in, its
prediction of frame t+1 out. It trains on random moving squares and discs (moving_shapes.py)
for a time budget on one CPU thread (Adam, MSE on the next frame), then `convert_torch`
folds the cell loops into two ConvLSTM nodes and checks the file against torch.
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
from moving_shapes import SIZE, batch  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

OUT = os.path.join(HERE, "models", "moving_shapes.lstm")


class ConvLSTMCell(nn.Module):
    def __init__(self, input_dim: int, hidden_dim: int, kernel_size: int):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.conv = nn.Conv2d(input_dim + hidden_dim, 4 * hidden_dim, kernel_size,
                              padding=kernel_size // 2)

    def forward(self, x, state):
        h, c = state
        i, f, o, g = torch.split(self.conv(torch.cat([x, h], dim=1)), self.hidden_dim, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class NextFrame(nn.Module):
    """(B, T, 1, H, W) frames -> (B, T, 1, H, W): at step t, the prediction of frame t+1."""

    def __init__(self, hidden=(8, 8), kernel_size: int = 5):
        super().__init__()
        dims = (1,) + tuple(hidden)
        self.cells = nn.ModuleList([ConvLSTMCell(dims[k], dims[k + 1], kernel_size)
                                    for k in range(len(hidden))])
        self.head = nn.Conv2d(dims[-1], 1, 1)

    def forward(self, x):
        B, T, _, H, W = x.shape
        seq = x
        for cell in self.cells:
            h = c = torch.zeros(B, cell.hidden_dim, H, W)
            outs = []
            for t in range(T):
                h, c = cell(seq[:, t], (h, c))
                outs.append(h)
            seq = torch.stack(outs, dim=1)
        return torch.stack([torch.sigmoid(self.head(seq[:, t])) for t in range(T)], dim=1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=90.0, help="training time budget")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    model = NextFrame()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    val = torch.from_numpy(batch(np.random.default_rng(123), 16, 12))
    t0, it = time.perf_counter(), 0
    while time.perf_counter() - t0 < args.seconds:
        x = torch.from_numpy(batch(rng, 8, 10))
        loss = torch.mean((model(x[:, :-1]) - x[:, 1:]) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        it += 1
        if it % 50 == 0:
            with torch.no_grad():
                v = float(torch.mean((model(val[:, :-1]) - val[:, 1:]) ** 2))
                base = float(torch.mean((val[:, :-1] - val[:, 1:]) ** 2))
            print(f"iter {it:5d}  {time.perf_counter() - t0:5.0f} s  train mse {loss.item():.4f}  "
                  f"val mse {v:.4f}  (copy last frame {base:.4f})", flush=True)
    model.eval()
    from converters import convert_torch
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    report = convert_torch(model, args.out, torch.from_numpy(batch(rng, 2, 4)))
    print(report)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
