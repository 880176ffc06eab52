"""Element-wise ops on two inputs of equal size: Add, Mul, and Binary (`kind` add, sub,
mul, div, max, min, pow) with IEEE results for division by zero and NaN for a negative
base with a non-integer exponent, as onnxruntime gives them."""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..kernels import KERNEL
from .base import IN, OUT, OpDef, Signature, SpecError, integer, new_row

OPCODE = 8
SIZE, OTHER, KIND = range(3, 6)  # OTHER: scratch offset of the second input
BINARY_CODES = {"add": 0, "sub": 1, "mul": 2, "div": 3, "max": 4, "min": 5, "pow": 6}
BINARY_KINDS = tuple(BINARY_CODES)


def spec(a: dict) -> Signature:
    f = integer(a, "size")
    return Signature([f, f], f, {})


def spec_kind(a: dict) -> Signature:
    if a.get("kind") not in BINARY_KINDS:
        raise SpecError(f"binary kind must be one of {', '.join(BINARY_KINDS)}; got {a.get('kind')!r}")
    return spec(a)


def _emitter(kind: str | None):
    def emit(em, node, ins: list[int], out: int, state: dict) -> None:
        code = BINARY_CODES[kind or node.attrs["kind"]]
        em.add_row(new_row(OPCODE, {IN: ins[0], OUT: out, SIZE: node.attrs["size"],
                                    OTHER: ins[1], KIND: code}))
    return emit


@njit(inline="always", **KERNEL)
def _binary(a, b, kind):
    if kind == 0:
        return a + b
    if kind == 1:
        return a - b
    if kind == 2:
        return a * b
    if kind == 3:
        if b == 0:
            return np.float32(np.nan) if a == 0 or a != a else np.float32(np.inf) * a * math.copysign(1.0, b)
        return a / b
    if kind == 4:
        return max(a, b)
    if kind == 5:
        return min(a, b)
    return a ** b if a > 0 or b == math.floor(b) else np.float32(np.nan)


@njit(**KERNEL)
def step(prog, r, w, st, sc):
    i0 = prog[r, IN]
    o0 = prog[r, OUT]
    b0 = prog[r, OTHER]
    kind = prog[r, KIND]
    n = prog[r, SIZE]
    a = sc[i0:i0 + n]
    b = sc[b0:b0 + n]
    o = sc[o0:o0 + n]
    # add, sub, mul in loops of their own: LLVM vectorises them (a branch on `kind` per
    # element stops it)
    if kind == 0:
        for j in range(n):
            o[j] = a[j] + b[j]
    elif kind == 1:
        for j in range(n):
            o[j] = a[j] - b[j]
    elif kind == 2:
        for j in range(n):
            o[j] = a[j] * b[j]
    else:
        for j in range(n):
            o[j] = _binary(a[j], b[j], kind)


OPS = (OpDef("Add", spec, _emitter("add")), OpDef("Mul", spec, _emitter("mul")),
       OpDef("Binary", spec_kind, _emitter(None)))
