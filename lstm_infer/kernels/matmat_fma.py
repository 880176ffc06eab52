"""A batch's input and recurrent products in plain FMA order, for run() on a batch (the
LSTM's gates, ops/lstm.lstm_batch; the reset-after GRU's gx and gh, ops/gru.gru_batch).

The kernel this replaced (linalg.matmat_packed2, up to commit 95e59a7) formed each output
exactly as step()'s mat-vec does (four-term partial sums added into the output, so a batch's
sequences were bit-identical to lone ones), which needs 16 partial-sum registers next to the
16 of the register block: LLVM spilled part of the block every four weight rows. Here each
output is one FMA chain, out += x[k] * W[k, j] for k in order (the x rows, then the h rows),
nothing but the block and one weight row live: LSTM (16,64) B=32, (32 x 80) @ (80 x 256) per
step, 85 -> 103 GFLOP/s; (256,512), (32 x 768) @ (768 x 2048), 104 -> 109 GFLOP/s (thread
time, interleaved, AVX-512). Another summation order than step(), so a batch's sequences
agree with lone ones to float32 rounding, not bit for bit (within 1e-5 on unit-scale data,
tests/test_batch_fma.py).
"""
import numpy as np
from numba import carray, njit

from . import KERNEL
from .linalg import PANEL, _stack_f32, _store4


@njit(inline="always", **KERNEL)
def _fma_rows4(a0, a1, a2, a3, x, b, x_off, w, base, rows):
    """a0..a3[j] += sum_k x[b + i, x_off + k] * w[base + k*PANEL + j], j < PANEL, one FMA per
    weight and vector in k order (one packed panel of pack_panels)."""
    x0 = x[b, x_off:x_off + rows]  # sliced: plain indices k >= 0 (see linalg.matvec_cols)
    x1 = x[b + 1, x_off:x_off + rows]
    x2 = x[b + 2, x_off:x_off + rows]
    x3 = x[b + 3, x_off:x_off + rows]
    for k in range(rows):
        r = w[base + k * PANEL:base + (k + 1) * PANEL]
        p0, p1, p2, p3 = x0[k], x1[k], x2[k], x3[k]
        for j in range(PANEL):
            u = r[j]
            a0[j] += p0 * u
            a1[j] += p1 * u
            a2[j] += p2 * u
            a3[j] += p3 * u


@njit(inline="always", **KERNEL)
def _fma_row(o, xr, w, base, stride, rows, n):
    """o[j] += sum_k xr[k] * w[base + k*stride + j], j < n, k in order (a lone vector)."""
    for k in range(rows):
        r = w[base + k * stride:base + k * stride + n]
        p = xr[k]
        for j in range(n):
            o[j] += p * r[j]


@njit(**KERNEL)
def matmat_fma2(out, bias, x, w, p_off, rows, h, q_off, hrows, cols):
    """out[b, j] = bias[j] + x[b] W + h[b] U for W (rows, cols) packed at w[p_off:] and U
    (hrows, cols) at w[q_off:] (linalg.pack_panels): four vectors x one 64-column panel of
    sums in registers over both matrices, each sum one FMA chain in k order from the bias
    (loaded into the registers, not first written to out). Vectors past the last four and
    columns past the last full panel go one vector at a time, in the same order."""
    a0 = carray(_stack_f32(PANEL), PANEL)
    a1 = carray(_stack_f32(PANEL), PANEL)
    a2 = carray(_stack_f32(PANEL), PANEL)
    a3 = carray(_stack_f32(PANEL), PANEL)
    nb = x.shape[0]
    npan = cols // PANEL
    pw = np.int64(PANEL)
    for q in range(npan):
        base = p_off + q * rows * PANEL
        hbase = q_off + q * hrows * PANEL
        c = q * PANEL
        bq = bias[c:c + PANEL]
        b = 0
        while b + 4 <= nb:
            o0 = out[b, c:c + PANEL]
            o1 = out[b + 1, c:c + PANEL]
            o2 = out[b + 2, c:c + PANEL]
            o3 = out[b + 3, c:c + PANEL]
            for j in range(PANEL):
                a0[j] = bq[j]
                a1[j] = bq[j]
                a2[j] = bq[j]
                a3[j] = bq[j]
            _fma_rows4(a0, a1, a2, a3, x, b, np.int64(0), w, base, rows)
            _fma_rows4(a0, a1, a2, a3, h, b, np.int64(0), w, hbase, hrows)
            _store4(o0, o1, o2, o3, a0, a1, a2, a3, PANEL)
            b += 4
        while b < nb:
            o = out[b, c:c + PANEL]
            for j in range(PANEL):
                o[j] = bq[j]
            _fma_row(o, x[b, :rows], w, base, pw, rows, pw)
            _fma_row(o, h[b, :hrows], w, hbase, pw, hrows, pw)
            b += 1
    rest = cols - npan * PANEL
    if rest > 0:
        c = npan * PANEL
        for b in range(nb):
            o = out[b, c:cols]
            for j in range(rest):
                o[j] = bias[c + j]
            _fma_row(o, x[b, :rows], w, p_off + c * rows, np.int64(rest), rows, rest)
            _fma_row(o, h[b, :hrows], w, q_off + c * hrows, np.int64(rest), hrows, rest)
