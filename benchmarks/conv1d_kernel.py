"""The per-step Conv1d kernels on silero-vad's front end: the scalar reference loop
(`ops.conv1d.conv1d`, the kernel before im2col) against the kernel the planner picks now.

    python -m benchmarks.conv1d_kernel [--calls 2000]

Each kernel is called directly (Numba dispatch included, no model around it) on the five
convolutions of one 576-sample frame; prints µs per call (median of 5 rounds) per conv
and their sum, and the max abs difference between the two.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

# (name, C, L, M, K, stride, dilation, pad_left, pad_right, groups): silero_vad_v6's convs
VAD_CONVS = [
    ("stft", 1, 832, 258, 256, 128, 1, 0, 0, 1),
    ("conv0", 129, 4, 128, 3, 1, 1, 1, 1, 1),
    ("conv1", 128, 4, 64, 3, 2, 1, 1, 1, 1),
    ("conv2", 64, 2, 64, 3, 2, 1, 1, 1, 1),
    ("conv3", 64, 1, 128, 3, 1, 1, 1, 1, 1),
]


def _time(fn, calls: int, rounds: int = 5) -> float:
    meds = []
    for _ in range(rounds):
        ts = np.empty(calls, np.int64)
        for k in range(calls):
            t0 = time.perf_counter_ns()
            fn()
            ts[k] = time.perf_counter_ns() - t0
        meds.append(np.median(ts) / 1e3)
    return float(np.median(meds))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.conv1d_kernel", description=__doc__)
    ap.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args(argv)
    import lstm_infer.kernels  # noqa: F401  (sets up the kernel cache first)
    from lstm_infer.ops import conv1d as c1
    rng = np.random.default_rng(0)
    tot_old = tot_new = 0.0
    print(f"{'conv':<6} {'shape (C,L)->(M,Lout) K/s':<28} {'old us':>8} {'new us':>8} {'speed-up':>8} "
          f"{'kernel':>7} {'max diff':>9}")
    for name, C, L, M, K, s, d, pl, pr, g in VAD_CONVS:
        L_out = (L + pl + pr - d * (K - 1) - 1) // s + 1
        W = rng.uniform(-0.1, 0.1, (M, C // g, K)).astype(np.float32)
        b = rng.uniform(-0.1, 0.1, M).astype(np.float32)
        packed = c1.pack_weights(W, g)
        w = np.concatenate([W.ravel(), b, packed.ravel()])
        b_off, p_off = W.size, W.size + M
        x = rng.standard_normal(C * L).astype(np.float32)
        out_old = np.zeros(M * L_out, np.float32)
        out_new = np.zeros(M * L_out, np.float32)
        tile = min(L_out, c1.TILE_ROWS)
        xt = np.zeros((L + pl + pr) * C, np.float32)
        tmp = np.zeros(tile * M, np.float32)
        gemm = M // g >= c1.GEMM_MIN_CHANNELS

        def old():
            c1.conv1d(x, out_old, w, C, L, M, K, s, d, pl, g, L_out, 0, b_off)

        def new():
            if gemm:
                c1.conv1d_gemm(x, out_new, w, C, L, M, K, s, d, pl, g, L_out, p_off, b_off, xt, tmp, tile)
            else:
                c1.conv1d_direct(x, out_new, w, C, L, M, K, s, d, pl, g, L_out, 0, b_off)
        old()
        new()
        t_old, t_new = _time(old, args.calls), _time(new, args.calls)
        tot_old += t_old
        tot_new += t_new
        diff = float(np.abs(out_old - out_new).max())
        print(f"{name:<6} {f'({C},{L})->({M},{L_out}) {K}/{s}':<28} {t_old:8.1f} {t_new:8.1f} "
              f"{t_old / t_new:7.1f}x {'gemm' if gemm else 'direct':>7} {diff:9.1e}")
    print(f"{'total':<6} {'':<28} {tot_old:8.1f} {tot_new:8.1f} {tot_old / tot_new:7.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
