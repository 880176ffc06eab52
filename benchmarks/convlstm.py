"""ConvLSTM2D per-frame latency: lstm-infer's `Stream.step` against the PyTorch ConvLSTM
cell loop users write (`nn.Conv2d` over `torch.cat([x, h], 1)`, split into i, f, o, g),
both on one thread (torch.set_num_threads(1)), one 64x64x1 frame per call, 16 filters,
3x3 kernel, 'same' padding.

    python -m benchmarks.convlstm [--steps 300] [--frame 64] [--filters 16] [--kernel 3]

The engine's model is built from the torch cell's weights (W_x, W_h = the Conv2d weight
split at the input channels, transposed (2, 3, 1, 0); gates reordered i, f, o, g ->
i, f, g, o) and checked against the torch loop before timing. Each engine is timed per
call with perf_counter_ns over the same frames, state carried, in alternating blocks of
20 frames; prints and writes
benchmarks/results/convlstm.json and .md (median, p99, ratio, CPU).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

BLOCK = 20  # frames per engine turn
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _cpu() -> str:
    from .run import cpu_model  # one reading of /proc/cpuinfo for every benchmark
    return cpu_model()


def torch_cell(C: int, F: int, k: int):
    import torch

    class ConvLSTMCell(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.F = F
            self.conv = torch.nn.Conv2d(C + F, 4 * F, k, padding=k // 2)

        def forward(self, x, h, c):
            z = self.conv(torch.cat([x, h], dim=1))
            i, f, o, g = torch.split(z, self.F, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            return h, c

    return ConvLSTMCell().eval()


def engine_model(cell, S: int, C: int, F: int, k: int, directory: str):
    """The torch cell as a .lstm ConvLSTM node (frames (S, S, C), channels-last)."""
    import lstm_infer
    from lstm_infer.builder import GraphBuilder
    Wt = cell.conv.weight.detach().numpy()          # (4F, C+F, k, k), gates i, f, o, g
    bt = cell.conv.bias.detach().numpy()
    order = np.concatenate([np.arange(0, 2 * F), np.arange(3 * F, 4 * F), np.arange(2 * F, 3 * F)])
    Wt, bt = Wt[order], bt[order]                   # -> i, f, g, o
    W = Wt.transpose(2, 3, 1, 0)                    # (k, k, C+F, 4F)
    b = GraphBuilder("x", S * S * C, shape=(S, S, C))
    p = k // 2
    b.output(b.add("ConvLSTM", "convlstm", ["x"],
                   {"in_height": S, "in_width": S, "in_channels": C, "filters": F,
                    "kernel_size": [k, k], "pads": [p, p, p, p]},
                   {"W_x": W[:, :, :C], "W_h": W[:, :, C:], "bias": bt}), shape=(S, S, F))
    path = os.path.join(directory, "convlstm.lstm")
    b.save(path, converter="benchmarks.convlstm")
    return lstm_infer.load(path)


def _stats(ns: np.ndarray) -> dict:
    us = ns / 1e3
    return {"median_us": float(np.median(us)), "p99_us": float(np.percentile(us, 99)),
            "mean_us": float(us.mean())}


def run(steps: int, S: int, F: int, k: int, C: int = 1) -> dict:
    import torch
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cell = torch_cell(C, F, k)
    frames = np.random.default_rng(0).standard_normal((steps, S, S, C)).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        m = engine_model(cell, S, C, F, k, d)
    xt = [torch.from_numpy(np.ascontiguousarray(f.transpose(2, 0, 1))[None]) for f in frames]
    # agreement over a few frames (state carried), channels-last vs torch's (1, F, S, S)
    s = m.stream()
    h = c = torch.zeros(1, F, S, S)
    diff = 0.0
    with torch.inference_mode():
        for t in range(5):
            h, c = cell(xt[t], h, c)
            y = s.step(frames[t])
            diff = max(diff, float(np.abs(y.reshape(S, S, F) - h[0].numpy().transpose(1, 2, 0)).max()))
    # timing: warm-up, then one call per frame
    s = m.stream()
    y = np.empty(m.output_size, np.float32)
    flat = frames.reshape(steps, -1)
    for t in range(min(20, steps)):
        s.step(flat[t], out=y)
    s.reset()
    ours = np.empty(steps, np.int64)
    theirs = np.empty(steps, np.int64)
    # blocks of BLOCK frames, engines alternating, so that load from other processes on a
    # shared machine hits both alike
    with torch.inference_mode():
        for t in range(min(20, steps)):
            h, c = cell(xt[t], h, c)
        h = c = torch.zeros(1, F, S, S)
        for t0 in range(0, steps, BLOCK):
            for t in range(t0, min(t0 + BLOCK, steps)):
                a0 = time.perf_counter_ns()
                s.step(flat[t], out=y)
                ours[t] = time.perf_counter_ns() - a0
            for t in range(t0, min(t0 + BLOCK, steps)):
                a0 = time.perf_counter_ns()
                h, c = cell(xt[t], h, c)
                theirs[t] = time.perf_counter_ns() - a0
    a, b = _stats(ours), _stats(theirs)
    flops = 2 * S * S * k * k * (C + F) * 4 * F
    return {"config": {"frame": [S, S, C], "filters": F, "kernel": [k, k], "padding": "same",
                       "steps": steps, "threads": 1},
            "cpu": _cpu(), "torch_version": torch.__version__,
            "lstm_infer": a, "torch_cell_loop": b,
            "speedup_median": b["median_us"] / a["median_us"],
            "speedup_p99": b["p99_us"] / a["p99_us"],
            "lstm_infer_gflops": flops / (a["median_us"] * 1e3),
            "max_abs_diff": diff}


def markdown(r: dict) -> str:
    c = r["config"]
    lines = [f"# ConvLSTM2D per-frame step, frame {tuple(c['frame'])}, {c['filters']} filters, "
             f"kernel {c['kernel'][0]}x{c['kernel'][1]}, 1 thread",
             "", f"CPU: {r['cpu']}; torch {r['torch_version']}; {c['steps']} frames, state carried; "
             f"max abs difference {r['max_abs_diff']:.2g}", "",
             "| engine | median us | p99 us | ratio (torch / engine, median) |", "|---|---|---|---|",
             f"| lstm-infer Stream.step | {r['lstm_infer']['median_us']:.0f} | "
             f"{r['lstm_infer']['p99_us']:.0f} | {r['speedup_median']:.2f}x |",
             f"| PyTorch cell loop (Conv2d over cat([x, h])) | {r['torch_cell_loop']['median_us']:.0f} | "
             f"{r['torch_cell_loop']['p99_us']:.0f} | 1x |", "",
             f"lstm-infer achieves {r['lstm_infer_gflops']:.1f} GFLOP/s on the two convolutions, "
             "counted as direct convolutions over the whole step (3x3 stride-1 kernels run as "
             "Winograd F(4x4, 3x3): 4x fewer multiplications than counted)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.convlstm", description=__doc__)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--frame", type=int, default=64)
    ap.add_argument("--filters", type=int, default=16)
    ap.add_argument("--kernel", type=int, default=3)
    ap.add_argument("--out-dir", default=RESULTS)
    args = ap.parse_args(argv)
    r = run(args.steps, args.frame, args.filters, args.kernel)
    md = markdown(r)
    print(md)
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "convlstm.json"), "w") as f:
        json.dump(r, f, indent=2)
    with open(os.path.join(args.out_dir, "convlstm.md"), "w") as f:
        f.write(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
