"""LayerNorm: (x - mean) / sqrt(var + eps) * weight + bias over each of `rows` rows of
`size` features (biased variance, as PyTorch and ONNX)."""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..kernels import KERNEL
from .base import IN, OUT, OpDef, Signature, SpecError, integer, new_row, number, size

OPCODE = 6
SIZE, EPS, WEIGHT, BIAS, ROWS = range(3, 8)  # EPS: offset of eps in the weight arena


def spec(a: dict) -> Signature:
    f = integer(a, "size")
    rows = integer(a, "rows", default=1)
    if number(a, "eps", 1e-5) <= 0:
        raise SpecError("attribute 'eps' must be positive")
    total = size(f * rows)
    return Signature([total], total, {"weight": ((f,), False), "bias": ((f,), False)})


def emit(em, node, ins: list[int], out: int, state: dict) -> None:
    a = node.attrs
    em.add_row(new_row(OPCODE, {
        IN: ins[0], OUT: out, SIZE: a["size"], EPS: em.const(a.get("eps", 1e-5)),
        WEIGHT: em.weight(node, "weight"), BIAS: em.weight(node, "bias"), ROWS: a.get("rows", 1)}))


@njit(**KERNEL)
def step(prog, r, w, st, sc):
    i0 = prog[r, IN]
    o0 = prog[r, OUT]
    F = prog[r, SIZE]
    for row in range(prog[r, ROWS]):
        layernorm(sc[i0 + row * F:i0 + (row + 1) * F], sc[o0 + row * F:o0 + (row + 1) * F],
                  F, w[prog[r, EPS]], w, prog[r, WEIGHT], prog[r, BIAS])


@njit(**KERNEL)
def layernorm(x, out, n, eps, w, w_off, b_off):
    """(x - mean) / sqrt(var + eps) * weight + bias, two-pass in float64 for stability."""
    s = 0.0
    for j in range(n):
        s += x[j]
    mean = s / n
    v = 0.0
    for j in range(n):
        d = x[j] - mean
        v += d * d
    inv = 1.0 / math.sqrt(v / n + eps)
    for j in range(n):
        r = np.float32((x[j] - mean) * inv)
        if w_off >= 0:
            r = r * w[w_off + j]
        if b_off >= 0:
            r = r + w[b_off + j]
        out[j] = r


OPS = (OpDef("LayerNorm", spec, emit),)
