"""Gather: y[j] = x[index[j]], or 0 where index[j] is -1. Every Transpose, Slice,
Gather, Pad, Split or Flatten of a per-step tensor becomes one of these."""
from __future__ import annotations

import numpy as np
from numba import njit

from ..kernels import KERNEL
from .base import IN, OUT, OpDef, Signature, SpecError, integer, new_row

OPCODE = 10
OUT_SIZE, INDEX = range(3, 5)


def spec(a: dict) -> Signature:
    n_in, n_out = integer(a, "in_size"), integer(a, "out_size")
    return Signature([n_in], n_out, {"index": ((n_out,), True)})


def check(attrs: dict, weights: dict, in_sizes: list[int]) -> None:
    """Indices come from an untrusted file: they must stay inside the input vector."""
    idx = weights["index"]
    n_in = in_sizes[0]
    if not (np.all(idx == np.floor(idx)) and np.all(idx >= -1) and np.all(idx < n_in)):
        raise SpecError(f"index values must be integers in [-1, {n_in})")


def _as_int32(index: np.ndarray) -> np.ndarray:
    """The (validated) float indices as int32 bit patterns in a float32 array: the step
    reads them through `.view(np.int32)`, with no float-to-int conversion per element."""
    return np.asarray(index).astype(np.int32).view(np.float32)


def emit(em, node, ins: list[int], out: int, state: dict) -> None:
    em.add_row(new_row(OPCODE, {IN: ins[0], OUT: out, OUT_SIZE: node.attrs["out_size"],
                                INDEX: em.derived(node, "index", "gather.int32", _as_int32)}))


@njit(**KERNEL)
def step(prog, r, w, st, sc):
    i0 = prog[r, IN]
    o0 = prog[r, OUT]
    x0 = prog[r, INDEX]
    n = prog[r, OUT_SIZE]
    idx = w[x0:x0 + n].view(np.int32)
    o = sc[o0:o0 + n]
    for j in range(n):
        k = idx[j]
        o[j] = sc[i0 + k] if k >= 0 else np.float32(0.0)


OPS = (OpDef("Gather", spec, emit, check=check),)
