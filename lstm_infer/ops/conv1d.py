"""Conv1d over one step's (channels, length) tensor (not over time): stride, dilation,
zero padding, groups.

Weights: W (M, C/groups, K) in the ONNX/PyTorch layout (not transposed), bias (M).
Output (M, L_out), L_out = (L + pad_left + pad_right - dilation*(K-1) - 1) // stride + 1.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..kernels import KERNEL
from .base import IN, OUT, OpDef, Signature, SpecError, integer, new_row, size

OPCODE = 11
(CHANNELS, LENGTH, OUT_CHANNELS, KERNEL_SIZE, STRIDE, DILATION, PAD_LEFT, GROUPS, OUT_LENGTH,
 W, BIAS) = range(3, 14)


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


def emit(em, node, ins: list[int], out: int, state: dict) -> None:
    a = node.attrs
    out_length = spec(a).output // a["out_channels"]
    em.add_row(new_row(OPCODE, {
        IN: ins[0], OUT: out, CHANNELS: a["in_channels"], LENGTH: a["in_length"],
        OUT_CHANNELS: a["out_channels"], KERNEL_SIZE: a["kernel_size"], STRIDE: a.get("stride", 1),
        DILATION: a.get("dilation", 1), PAD_LEFT: a.get("pad_left", 0), GROUPS: a.get("groups", 1),
        OUT_LENGTH: out_length, W: em.weight(node, "W"), BIAS: em.weight(node, "bias")}))


@njit(**KERNEL)
def conv1d(x, out, w, C, L, M, K, stride, dil, pad, groups, L_out, w_off, b_off):
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
    L_out = prog[r, OUT_LENGTH]
    conv1d(sc[i0:i0 + C * L], sc[o0:o0 + M * L_out], w, C, L, M, prog[r, KERNEL_SIZE],
           prog[r, STRIDE], prog[r, DILATION], prog[r, PAD_LEFT], prog[r, GROUPS], L_out,
           prog[r, W], prog[r, BIAS])


OPS = (OpDef("Conv1d", spec, emit),)
