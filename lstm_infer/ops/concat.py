"""Concat: the inputs' vectors side by side. Emitted as one COPY row per input; the
planner also uses COPY rows to gather the graph's outputs into one vector."""
from __future__ import annotations

from numba import njit

from ..kernels import KERNEL
from .base import IN, OUT, OpDef, Signature, SpecError, integer, new_row, size

OPCODE = 7  # COPY
SIZE = 3


def spec(a: dict) -> Signature:
    sizes = a.get("sizes")
    if not isinstance(sizes, list) or not 1 <= len(sizes) <= 64:
        raise SpecError("attribute 'sizes' must be a list of 1-64 sizes")
    ins = [integer({"s": s}, "s") for s in sizes]
    return Signature(ins, size(sum(ins)), {})


def copy_row(src: int, dst: int, n: int) -> list[int]:
    return new_row(OPCODE, {IN: src, OUT: dst, SIZE: n})


def emit(em, node, ins: list[int], out: int, state: dict) -> None:
    pos = out
    for src, n in zip(ins, node.attrs["sizes"]):
        em.add_row(copy_row(src, pos, n))
        pos += n


@njit(inline="always", **KERNEL)
def step(prog, r, w, st, sc):
    i0 = prog[r, IN]
    o0 = prog[r, OUT]
    for j in range(prog[r, SIZE]):
        sc[o0 + j] = sc[i0 + j]


OPS = (OpDef("Concat", spec, emit),)
