"""Numba blocks shared by the xLSTM layer ops (ops/mlstm.py, ops/slstm.py): the causal
depthwise conv1d with its SiLU, the headwise (block-diagonal) projection, the multi-head
layer norm, and the scalar functions, each written as the `xlstm` package computes it."""
import math

import numpy as np
from numba import njit

from . import KERNEL


@njit(inline="always", **KERNEL)
def silu(v):
    """torch.nn.functional.silu: x * sigmoid(x), written x / (1 + e^-x) (-0 for x -> -inf)."""
    return v / (np.float32(1.0) + math.exp(-v))


@njit(inline="always", **KERNEL)
def logsigmoid(v):
    """log(sigmoid(x)) = min(x, 0) - log1p(e^-|x|), stable for both signs (as torch's)."""
    return min(v, np.float32(0.0)) - math.log1p(math.exp(-abs(v)))


@njit(**KERNEL)
def conv_silu(x, out, past, w, cw_off, cb_off, K, F, act):
    """Causal depthwise conv1d over time (xlstm CausalConv1d.step), then SiLU when `act`:
    out[j] = b[j] + sum_{k<K-1} W[k, j] past[k, j] + W[K-1, j] x[j], with W (K, F) and
    `past` the K-1 previous inputs, oldest first (shifted, x appended)."""
    if cb_off >= 0:
        b = w[cb_off:cb_off + F]
        for j in range(F):
            out[j] = b[j]
    else:
        for j in range(F):
            out[j] = np.float32(0.0)
    for k in range(K - 1):
        wk = w[cw_off + k * F:cw_off + (k + 1) * F]
        pk = past[k * F:(k + 1) * F]
        for j in range(F):
            out[j] += wk[j] * pk[j]
    wl = w[cw_off + (K - 1) * F:cw_off + K * F]
    for j in range(F):
        out[j] += wl[j] * x[j]
    if K > 1:
        for j in range((K - 2) * F):
            past[j] = past[j + F]
        newest = past[(K - 2) * F:(K - 1) * F]
        for j in range(F):
            newest[j] = x[j]
    if act:
        for j in range(F):
            out[j] = silu(out[j])


@njit(**KERNEL)
def headwise(x, out, w, w_off, b_off, G, B):
    """out = block-diagonal x W (+ bias): G blocks of W (B, B) stored [g, in, out], the
    transpose of xlstm LinearHeadwiseExpand.weight[g] (out, in)."""
    if b_off >= 0:
        b = w[b_off:b_off + G * B]
        for j in range(G * B):
            out[j] = b[j]
    else:
        for j in range(G * B):
            out[j] = np.float32(0.0)
    for g in range(G):
        xg = x[g * B:(g + 1) * B]
        og = out[g * B:(g + 1) * B]
        base = w_off + g * B * B
        for i in range(B):
            row = w[base + i * B:base + (i + 1) * B]
            xi = xg[i]
            for o in range(B):
                og[o] += xi * row[o]


@njit(**KERNEL)
def head_norm(x, out, NH, DH, eps, w, w_off):
    """xlstm MultiHeadLayerNorm (F.group_norm with NH groups): each head's DH values
    normalised (biased variance, float64 sums), times weight (NH*DH) when w_off >= 0."""
    for h in range(NH):
        xs = x[h * DH:(h + 1) * DH]
        os = out[h * DH:(h + 1) * DH]
        s = 0.0
        for j in range(DH):
            s += xs[j]
        mean = s / DH
        v = 0.0
        for j in range(DH):
            d = xs[j] - mean
            v += d * d
        inv = 1.0 / math.sqrt(v / DH + eps)
        if w_off >= 0:
            ws = w[w_off + h * DH:w_off + (h + 1) * DH]
            for j in range(DH):
                os[j] = np.float32((xs[j] - mean) * inv) * ws[j]
        else:
            for j in range(DH):
                os[j] = np.float32((xs[j] - mean) * inv)
