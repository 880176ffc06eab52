"""Conv1d over one step's (channels, length) tensor (not over time): stride, dilation,
zero padding, groups.

Weights: W (M, C/groups, K) in the ONNX/PyTorch layout (not transposed), bias (M).
Output (M, L_out), L_out = (L + pad_left + pad_right - dilation*(K-1) - 1) // stride + 1.

Two kernels, chosen at plan time (row field PACKED):
- im2col + mat-mat (PACKED >= 0, when a group has at least GEMM_MIN_CHANNELS output
  channels): up to TILE_ROWS output positions at a time, their receptive fields are
  copied into scratch rows (COLS, (tile, C*K), zeros where the window hangs over the
  padding, so the hot loop has no bounds check), then `linalg.matmat_acc` multiplies
  them by a re-laid-out copy of W (per group (C/groups*K, M/groups), made once by the
  planner) with its inner loop over contiguous output channels: full-width FMAs. The
  (tile, M) result (TMP) is transposed into the (M, L_out) output.
- direct (PACKED = -1, few output channels per group, e.g. depthwise): for each output
  channel, input channel and tap, one axpy over the output positions whose window lies
  inside the input (the range is computed outside the loop).
Both add terms in a fixed order; results agree with a float64 reference to float32
rounding.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..kernels import KERNEL
from ..kernels.linalg import matmat_acc
from .base import IN, OUT, OpDef, Signature, SpecError, integer, new_row, size

OPCODE = 11
(CHANNELS, LENGTH, OUT_CHANNELS, KERNEL_SIZE, STRIDE, DILATION, PAD_LEFT, GROUPS, OUT_LENGTH,
 W, BIAS, PACKED, COLS, TMP, TILE) = range(3, 18)

GEMM_MIN_CHANNELS = 8   # output channels per group from which im2col + mat-mat pays
TILE_ROWS = 16          # output positions per im2col tile (matmat_acc takes 4 at a time)


def spec(a: dict) -> Signature:
    c, length, m, k = (integer(a, "in_channels"), integer(a, "in_length"), integer(a, "out_channels"),
                       integer(a, "kernel_size"))
    stride, dil = integer(a, "stride", default=1), integer(a, "dilation", default=1)
    groups = integer(a, "groups", default=1)
    pl, pr = integer(a, "pad_left", lo=0, default=0), integer(a, "pad_right", lo=0, default=0)
    if c % groups or m % groups:
        raise SpecError(f"groups {groups} must divide in_channels {c} and out_channels {m}")
    span = dil * (k - 1) + 1
    if length + pl + pr < span:
        raise SpecError(f"kernel span {span} exceeds padded length {length + pl + pr}")
    l_out = (length + pl + pr - span) // stride + 1
    return Signature([size(c * length)], size(m * l_out),
                     {"W": ((m, c // groups, k), True), "bias": ((m,), False)})


def pack_weights(W: np.ndarray, groups: int) -> np.ndarray:
    """W (M, C/groups, K) -> (groups, C/groups*K, M/groups): per group, the transpose of
    its (M/groups, C/groups*K) rows, the (in, out) layout matmat_acc reads."""
    M, cg, K = W.shape
    mg = M // groups
    Wg = np.asarray(W, np.float32).reshape(groups, mg, cg * K)
    return np.ascontiguousarray(Wg.transpose(0, 2, 1))


def emit(em, node, ins: list[int], out: int, state: dict) -> None:
    a = node.attrs
    C, M, K, groups = a["in_channels"], a["out_channels"], a["kernel_size"], a.get("groups", 1)
    out_length = spec(a).output // M
    packed = cols = tmp = -1
    tile = 0
    if M // groups >= GEMM_MIN_CHANNELS:
        tile = min(out_length, TILE_ROWS)
        packed = em.derived(node, "W", f"conv1d.packed.{groups}", lambda W: pack_weights(W, groups))
        cols = em.alloc(tile * C * K)
        tmp = em.alloc(tile * M)
    em.add_row(new_row(OPCODE, {
        IN: ins[0], OUT: out, CHANNELS: C, LENGTH: a["in_length"],
        OUT_CHANNELS: M, KERNEL_SIZE: K, STRIDE: a.get("stride", 1),
        DILATION: a.get("dilation", 1), PAD_LEFT: a.get("pad_left", 0), GROUPS: groups,
        OUT_LENGTH: out_length, W: em.weight(node, "W"), BIAS: em.weight(node, "bias"),
        PACKED: packed, COLS: cols, TMP: tmp, TILE: tile}))


@njit(**KERNEL)
def _valid_range(start, step, n, L):
    """[lo, hi): the j < n with 0 <= start + j*step < L (step >= 1)."""
    lo = 0 if start >= 0 else (-start + step - 1) // step
    last = L - 1 - start
    hi = 0 if last < 0 else min(n, last // step + 1)
    return lo, max(lo, hi)


@njit(**KERNEL)
def conv1d_direct(x, out, w, C, L, M, K, stride, dil, pad, groups, L_out, w_off, b_off):
    """Per output channel, input channel and tap: one axpy over the valid output positions."""
    cg = C // groups
    mg = M // groups
    for m in range(M):
        g = m // mg
        o = out[m * L_out:(m + 1) * L_out]
        bias = w[b_off + m] if b_off >= 0 else np.float32(0.0)
        for t in range(L_out):
            o[t] = bias
        for ci in range(cg):
            xrow = x[(g * cg + ci) * L:(g * cg + ci + 1) * L]
            wrow = w[w_off + (m * cg + ci) * K:w_off + (m * cg + ci + 1) * K]
            for k in range(K):
                wk = wrow[k]
                off = k * dil - pad
                lo, hi = _valid_range(off, stride, L_out, L)
                if hi <= lo:
                    continue
                os = o[lo:hi]
                xs = xrow[lo * stride + off:]
                if stride == 1:
                    for j in range(hi - lo):
                        os[j] += wk * xs[j]
                else:
                    for j in range(hi - lo):
                        os[j] += wk * xs[j * stride]


@njit(**KERNEL)
def conv1d_gemm(x, out, w, C, L, M, K, stride, dil, pad, groups, L_out, p_off, b_off,
                cols, tmp, tile):
    """im2col tiles of `tile` output positions times the packed weights (see module doc)."""
    cg = C // groups
    mg = M // groups
    ck = C * K
    rows_g = cg * K
    t0 = 0
    while t0 < L_out:
        nb = min(tile, L_out - t0)
        X = cols[:nb * ck].reshape((nb, ck))
        Y = tmp[:nb * M].reshape((nb, M))
        for b in range(nb):
            start = (t0 + b) * stride - pad
            xr = X[b]
            lo, hi = _valid_range(start, dil, K, L)
            for c in range(C):
                d = xr[c * K:(c + 1) * K]
                for k in range(lo):
                    d[k] = np.float32(0.0)
                for k in range(hi, K):
                    d[k] = np.float32(0.0)
                if hi > lo:
                    s = x[c * L + start + lo * dil:c * L + L]
                    dd = d[lo:hi]
                    if dil == 1:
                        for j in range(hi - lo):
                            dd[j] = s[j]
                    else:
                        for j in range(hi - lo):
                            dd[j] = s[j * dil]
            yr = Y[b]
            if b_off >= 0:
                bv = w[b_off:b_off + M]
                for j in range(M):
                    yr[j] = bv[j]
            else:
                for j in range(M):
                    yr[j] = np.float32(0.0)
        for g in range(groups):
            matmat_acc(Y, g * mg, X, g * rows_g, w, p_off + g * rows_g * mg, rows_g, mg)
        for m in range(M):
            o = out[m * L_out + t0:m * L_out + t0 + nb]
            for b in range(nb):
                o[b] = Y[b, m]
        t0 += nb


@njit(**KERNEL)
def conv1d(x, out, w, C, L, M, K, stride, dil, pad, groups, L_out, w_off, b_off):
    """The reference loop (kept for tests and as the definition): one output at a time."""
    cg = C // groups
    mg = M // groups
    for m in range(M):
        g = m // mg
        bias = w[b_off + m] if b_off >= 0 else np.float32(0.0)
        for t in range(L_out):
            acc = bias
            base = t * stride - pad
            for ci in range(cg):
                c = g * cg + ci
                wrow = w_off + (m * cg + ci) * K
                for k in range(K):
                    pos = base + k * dil
                    if 0 <= pos < L:
                        acc += w[wrow + k] * x[c * L + pos]
            out[m * L_out + t] = acc


@njit(inline="always", **KERNEL)
def step(prog, r, w, st, sc):
    i0 = prog[r, IN]
    o0 = prog[r, OUT]
    C = prog[r, CHANNELS]
    L = prog[r, LENGTH]
    M = prog[r, OUT_CHANNELS]
    K = prog[r, KERNEL_SIZE]
    L_out = prog[r, OUT_LENGTH]
    p_off = prog[r, PACKED]
    if p_off >= 0:
        tile = prog[r, TILE]
        c0 = prog[r, COLS]
        m0 = prog[r, TMP]
        conv1d_gemm(sc[i0:i0 + C * L], sc[o0:o0 + M * L_out], w, C, L, M, K,
                    prog[r, STRIDE], prog[r, DILATION], prog[r, PAD_LEFT], prog[r, GROUPS], L_out,
                    p_off, prog[r, BIAS], sc[c0:c0 + tile * C * K], sc[m0:m0 + tile * M], tile)
    else:
        conv1d_direct(sc[i0:i0 + C * L], sc[o0:o0 + M * L_out], w, C, L, M, K,
                      prog[r, STRIDE], prog[r, DILATION], prog[r, PAD_LEFT], prog[r, GROUPS], L_out,
                      prog[r, W], prog[r, BIAS])


OPS = (OpDef("Conv1d", spec, emit),)
