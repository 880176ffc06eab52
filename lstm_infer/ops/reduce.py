"""Reduce: mean, sum, max or min over the middle axis of one step's tensor viewed as
(outer, axis, inner); output (outer, inner). (Not over time.)"""
from __future__ import annotations

from numba import njit

from ..kernels import KERNEL
from .base import IN, OUT, OpDef, Signature, SpecError, integer, new_row, size

OPCODE = 12
KIND, OUTER, AXIS, INNER = range(3, 7)
REDUCE_CODES = {"mean": 0, "sum": 1, "max": 2, "min": 3}
REDUCE_KINDS = tuple(REDUCE_CODES)


def spec(a: dict) -> Signature:
    if a.get("kind") not in REDUCE_KINDS:
        raise SpecError(f"reduce kind must be one of {', '.join(REDUCE_KINDS)}; got {a.get('kind')!r}")
    outer, axis, inner = integer(a, "outer"), integer(a, "axis"), integer(a, "inner")
    return Signature([size(outer * axis * inner)], size(outer * inner), {})


def emit(em, node, ins: list[int], out: int, state: dict) -> None:
    a = node.attrs
    em.add_row(new_row(OPCODE, {IN: ins[0], OUT: out, KIND: REDUCE_CODES[a["kind"]],
                                OUTER: a["outer"], AXIS: a["axis"], INNER: a["inner"]}))


@njit(**KERNEL)
def reduce(x, out, kind, outer, axis, inner):
    for o in range(outer):
        for i in range(inner):
            base = o * axis * inner + i
            acc = x[base]
            for a in range(1, axis):
                v = x[base + a * inner]
                if kind <= 1:
                    acc += v
                elif kind == 2:
                    acc = max(acc, v)
                else:
                    acc = min(acc, v)
            if kind == 0:
                acc = acc / axis
            out[o * inner + i] = acc


@njit(**KERNEL)
def step(prog, r, w, st, sc):
    i0 = prog[r, IN]
    o0 = prog[r, OUT]
    outer = prog[r, OUTER]
    axis = prog[r, AXIS]
    inner = prog[r, INNER]
    reduce(sc[i0:i0 + outer * axis * inner], sc[o0:o0 + outer * inner], prog[r, KIND],
           outer, axis, inner)


OPS = (OpDef("Reduce", spec, emit),)
