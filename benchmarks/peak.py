"""The machine's single-thread limits, measured once per suite run, so that every timed row
can say how far it is from them (issue 10: "achieved GFLOP/s and GB/s against the peak").

- `fma_gflops`: a Numba loop of independent fused multiply-adds on 128 float32
  accumulators held in registers (8 zmm / 16 ymm): the arithmetic peak of one core at the
  vector width LLVM picks for this CPU.
- `l2_read_gbs`: a vectorised multiply-accumulate over a 512 KB array read again and again:
  how fast one core streams weights that sit in L2 (a mat-vec's operating point for
  models of 32 KB to ~1 MB of weights).
- `copy_gbs`: numpy copy of a 64 MB array (read + write bytes): the DRAM bandwidth of one
  core, the limit for weights larger than the caches.
"""
from __future__ import annotations

import time

import numpy as np
from numba import carray, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["measure", "model_work"]


@intrinsic
def _stack_f32(typingctx, n):
    """A fixed-size float32 scratch on the stack: LLVM keeps it in registers, which a heap
    array (np.empty) never is; that is what makes the FMA loop reach the peak."""
    def impl(context, builder, sig, args):
        return cgutils.alloca_once(builder, context.get_value_type(types.float32), size=args[0])
    return types.CPointer(types.float32)(n), impl


@njit(cache=False, fastmath={"contract"})
def _fma_loop(n, a, b):
    acc = carray(_stack_f32(128), 128)
    for j in range(128):
        acc[j] = np.float32(j)
    for _ in range(n):
        for j in range(128):
            acc[j] = acc[j] * a + b
    s = np.float32(0.0)
    for j in range(128):
        s += acc[j]
    return s


@njit(cache=False, fastmath={"contract"})
def _read_loop(x, reps, a):
    acc = carray(_stack_f32(128), 128)
    for j in range(128):
        acc[j] = np.float32(0.0)
    m = x.shape[0] // 128
    for _ in range(reps):
        for i in range(m):
            blk = x[i * 128:(i + 1) * 128]
            for j in range(128):
                acc[j] += a * blk[j]
    s = np.float32(0.0)
    for j in range(128):
        s += acc[j]
    return s


def _best(fn, repeats: int = 5) -> float:
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def measure() -> dict:
    """Best of 5 for each figure (a peak, so the best run, not the median)."""
    a, b = np.float32(0.999), np.float32(0.001)
    _fma_loop(10, a, b)
    n = 2_000_000
    fma = 2 * 128 * n / _best(lambda: _fma_loop(n, a, b)) / 1e9
    x = np.random.default_rng(0).standard_normal(128 * 1024).astype(np.float32)  # 512 KB
    _read_loop(x, 1, a)
    reps = 400
    l2 = x.nbytes * reps / _best(lambda: _read_loop(x, reps, a)) / 1e9
    src = np.ones(16 << 20, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    copy = 2 * src.nbytes / _best(lambda: np.copyto(dst, src)) / 1e9
    return {"fma_gflops": fma, "l2_read_gbs": l2, "copy_gbs": copy,
            "method": "1 thread; best of 5: Numba FMA loop on 128 register accumulators; "
                      "multiply-accumulate over a 512 KB array (L2); numpy copy of 64 MB "
                      "(read + write bytes)"}


def model_work(model: dict) -> tuple[float, float]:
    """(FLOPs, fp32 weight bytes) of one time step of one sequence of a suite model (the
    ModelSpec.as_dict of benchmarks/models.py): matrices only, every matrix read once."""
    I, H, L, O = model["input_size"], model["hidden_size"], model["layers"], model["output_size"]
    G = 4 if model["op"] == "LSTM" else 3
    macs = sum(((I if k == 0 else H) + H) * G * H for k in range(L)) + H * O
    return 2.0 * macs, 4.0 * macs
