"""Conv1d over one step's (channels, length) tensor (not over time): stride, dilation,
zero padding, groups.

Weights: W (M, C/groups, K) in the ONNX/PyTorch layout (not transposed), bias (M).
Output (M, L_out), L_out = (L + pad_left + pad_right - dilation*(K-1) - 1) // stride + 1.

Two kernels, chosen at plan time (row field PACKED):
- implicit GEMM (PACKED >= 0, when a group has at least GEMM_MIN_CHANNELS output
  channels): the input is copied once per step into scratch (XT) transposed to
  (positions, channels) between zero padding rows, so that the receptive field of output
  position t is the rows t*stride + k*dilation, k < K, of it: no bounds checks and no
  im2col copy. Up to TILE_ROWS output positions at a time (TMP, (tile, M)) are then
  multiplied by a re-laid-out copy of W (per group (K*C/groups, M/groups), rows in
  (tap, channel) order, made once by the planner), four positions times four weight rows
  per pass with the inner loop over contiguous output channels: full-width FMAs, each
  weight row loaded once per four positions. The (tile, M) result is transposed into the
  (M, L_out) output.
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
from .base import IN, OUT, OpDef, Signature, SpecError, integer, new_row, size

OPCODE = 11
(CHANNELS, LENGTH, OUT_CHANNELS, KERNEL_SIZE, STRIDE, DILATION, PAD_LEFT, GROUPS, OUT_LENGTH,
 W, BIAS, PACKED, XT, TMP, TILE) = range(3, 18)

GEMM_MIN_CHANNELS = 8   # output channels per group from which the implicit GEMM pays
TILE_ROWS = 16          # output positions per tile of TMP (multiplied 4 at a time)


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
    """W (M, C/groups, K) -> (groups, K*C/groups, M/groups): per group, row k*C/groups + c
    holds the weights of tap k, input channel c for every output channel of the group
    (the (in, out) layout, taps major, that the implicit GEMM reads)."""
    M, cg, K = W.shape
    mg = M // groups
    Wg = np.asarray(W, np.float32).reshape(groups, mg, cg, K)
    return np.ascontiguousarray(Wg.transpose(0, 3, 2, 1).reshape(groups, K * cg, mg))


def emit(em, node, ins: list[int], out: int, state: dict) -> None:
    a = node.attrs
    C, M, K, groups = a["in_channels"], a["out_channels"], a["kernel_size"], a.get("groups", 1)
    out_length = spec(a).output // M
    packed = xt = tmp = -1
    tile = 0
    if M // groups >= GEMM_MIN_CHANNELS:
        tile = min(out_length, TILE_ROWS)
        packed = em.derived(node, "W", f"conv1d.packed.{groups}", lambda W: pack_weights(W, groups))
        xt = em.alloc((a["in_length"] + a.get("pad_left", 0) + a.get("pad_right", 0)) * C)
        tmp = em.alloc(tile * M)
    em.add_row(new_row(OPCODE, {
        IN: ins[0], OUT: out, CHANNELS: C, LENGTH: a["in_length"],
        OUT_CHANNELS: M, KERNEL_SIZE: K, STRIDE: a.get("stride", 1),
        DILATION: a.get("dilation", 1), PAD_LEFT: a.get("pad_left", 0), GROUPS: groups,
        OUT_LENGTH: out_length, W: em.weight(node, "W"), BIAS: em.weight(node, "bias"),
        PACKED: packed, XT: xt, TMP: tmp, TILE: tile}))


@njit(**KERNEL)
def _valid_range(start, step, n, L):
    """[lo, hi): the j < n with 0 <= start + j*step < L (step >= 1); lo may exceed n when
    there is none (then hi == lo)."""
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


@njit(inline="always", **KERNEL)
def _next_row(q, c, cg, ks):
    """Offset and channel of the next packed row (channel c + 1 of the same tap, or
    channel 0 of the next tap): no division in the loop."""
    c += 1
    q += 1
    if c == cg:
        c = 0
        q += ks - cg
    return q, c


@njit(**KERNEL)
def _gemm_tile(Y, nb, t0, xt, g0, stride, dil, pad, L, C, cg, K, w, p_off, mg, o_off):
    """Y[b, o_off + j] += sum_r xt[(t*stride + k*dil)*C + g0 + c] * P[r, j] for the
    positions t = t0 + b, b < nb, and j < mg, with P = w[p_off:] as (K*cg, mg), row
    r = k*cg + c. Blocks of four (then two, then one) positions times four weight rows per
    pass, as linalg.matmat_acc, the left operand read from the transposed input instead of
    an im2col copy; a block only visits the taps that reach the input for one of its
    positions (the others would add products with the zero padding)."""
    ts = stride * C
    ks = dil * C
    b = 0
    while b < nb:
        nbk = 4 if nb - b >= 4 else (2 if nb - b >= 2 else 1)
        t = t0 + b
        k_lo = min(K, _valid_range((t + nbk - 1) * stride - pad, dil, K, L)[0])
        k_hi = min(K, _valid_range(t * stride - pad, dil, K, L)[1])
        xb = t * ts + g0
        o0 = Y[b, o_off:o_off + mg]
        o1 = Y[b + 1 if nbk > 1 else b, o_off:o_off + mg]
        o2 = Y[b + 2 if nbk > 2 else b, o_off:o_off + mg]
        o3 = Y[b + 3 if nbk > 3 else b, o_off:o_off + mg]
        r = k_lo * cg
        r_hi = max(r, k_hi * cg)
        q = xb + k_lo * ks
        c = 0
        while r + 4 <= r_hi:
            q0 = q
            q, c = _next_row(q, c, cg, ks)
            q1 = q
            q, c = _next_row(q, c, cg, ks)
            q2 = q
            q, c = _next_row(q, c, cg, ks)
            q3 = q
            q, c = _next_row(q, c, cg, ks)
            w0 = w[p_off + r * mg:p_off + (r + 1) * mg]
            w1 = w[p_off + (r + 1) * mg:p_off + (r + 2) * mg]
            w2 = w[p_off + (r + 2) * mg:p_off + (r + 3) * mg]
            w3 = w[p_off + (r + 3) * mg:p_off + (r + 4) * mg]
            a0, a1, a2, a3 = xt[q0], xt[q1], xt[q2], xt[q3]
            if nbk == 4:
                c0, c1, c2, c3 = xt[q0 + ts], xt[q1 + ts], xt[q2 + ts], xt[q3 + ts]
                d0, d1, d2, d3 = xt[q0 + 2 * ts], xt[q1 + 2 * ts], xt[q2 + 2 * ts], xt[q3 + 2 * ts]
                e0, e1, e2, e3 = xt[q0 + 3 * ts], xt[q1 + 3 * ts], xt[q2 + 3 * ts], xt[q3 + 3 * ts]
                for j in range(mg):
                    p = w0[j]
                    u = w1[j]
                    v = w2[j]
                    z = w3[j]
                    o0[j] += a0 * p + a1 * u + a2 * v + a3 * z
                    o1[j] += c0 * p + c1 * u + c2 * v + c3 * z
                    o2[j] += d0 * p + d1 * u + d2 * v + d3 * z
                    o3[j] += e0 * p + e1 * u + e2 * v + e3 * z
            elif nbk == 2:
                c0, c1, c2, c3 = xt[q0 + ts], xt[q1 + ts], xt[q2 + ts], xt[q3 + ts]
                for j in range(mg):
                    p = w0[j]
                    u = w1[j]
                    v = w2[j]
                    z = w3[j]
                    o0[j] += a0 * p + a1 * u + a2 * v + a3 * z
                    o1[j] += c0 * p + c1 * u + c2 * v + c3 * z
            else:
                for j in range(mg):
                    o0[j] += a0 * w0[j] + a1 * w1[j] + a2 * w2[j] + a3 * w3[j]
            r += 4
        while r < r_hi:
            w0 = w[p_off + r * mg:p_off + (r + 1) * mg]
            for i in range(nbk):
                xv = xt[q + i * ts]
                oi = Y[b + i, o_off:o_off + mg]
                for j in range(mg):
                    oi[j] += xv * w0[j]
            q, c = _next_row(q, c, cg, ks)
            r += 1
        b += nbk


@njit(**KERNEL)
def conv1d_gemm(x, out, w, C, L, M, K, stride, dil, pad, groups, L_out, p_off, b_off,
                xt, tmp, tile):
    """Implicit GEMM over the transposed, padded input (see the module doc)."""
    cg = C // groups
    mg = M // groups
    rows_g = cg * K
    Lp = xt.shape[0] // C
    # xt = [zeros (pad rows) | x transposed to (L, C) | zeros]
    for i in range(pad * C):
        xt[i] = np.float32(0.0)
    for i in range((pad + L) * C, Lp * C):
        xt[i] = np.float32(0.0)
    for c in range(C):
        xr = x[c * L:(c + 1) * L]
        dst = xt[pad * C + c:]
        for l in range(L):
            dst[l * C] = xr[l]
    t0 = np.int64(0)  # not a literal 0: one specialisation of _gemm_tile
    while t0 < L_out:
        nb = min(tile, L_out - t0)
        Y = tmp[:nb * M].reshape((nb, M))
        for b in range(nb):
            yr = Y[b]
            if b_off >= 0:
                bv = w[b_off:b_off + M]
                for j in range(M):
                    yr[j] = bv[j]
            else:
                for j in range(M):
                    yr[j] = np.float32(0.0)
        for g in range(groups):
            _gemm_tile(Y, nb, t0, xt, g * cg, stride, dil, pad, L, C, cg, K, w,
                       p_off + g * rows_g * mg, mg, g * mg)
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


@njit(**KERNEL)
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
        pad = prog[r, PAD_LEFT]
        x0 = prog[r, XT]
        m0 = prog[r, TMP]
        span = (L_out - 1) * prog[r, STRIDE] + (K - 1) * prog[r, DILATION] + 1
        Lp = max(span, pad + L)
        conv1d_gemm(sc[i0:i0 + C * L], sc[o0:o0 + M * L_out], w, C, L, M, K,
                    prog[r, STRIDE], prog[r, DILATION], pad, prog[r, GROUPS], L_out,
                    p_off, prog[r, BIAS], sc[x0:x0 + Lp * C], sc[m0:m0 + tile * M], tile)
    else:
        conv1d_direct(sc[i0:i0 + C * L], sc[o0:o0 + M * L_out], w, C, L, M, K,
                      prog[r, STRIDE], prog[r, DILATION], prog[r, PAD_LEFT], prog[r, GROUPS], L_out,
                      prog[r, W], prog[r, BIAS])


OPS = (OpDef("Conv1d", spec, emit),)
