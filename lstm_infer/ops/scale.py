"""Scale: y = x * scale + shift per feature (constant Mul/Add/Sub/Div, a folded
BatchNormalization); either weight may be absent."""
from __future__ import annotations

from numba import njit

from ..kernels import KERNEL
from .base import IN, OUT, OpDef, Signature, integer, new_row

OPCODE = 9
SIZE, SCALE, SHIFT = range(3, 6)


def spec(a: dict) -> Signature:
    f = integer(a, "size")
    return Signature([f], f, {"scale": ((f,), False), "shift": ((f,), False)})


def emit(em, node, ins: list[int], out: int, state: dict) -> None:
    em.add_row(new_row(OPCODE, {IN: ins[0], OUT: out, SIZE: node.attrs["size"],
                                SCALE: em.weight(node, "scale"), SHIFT: em.weight(node, "shift")}))


@njit(**KERNEL)
def step(prog, r, w, st, sc):
    i0 = prog[r, IN]
    o0 = prog[r, OUT]
    s0 = prog[r, SCALE]
    t0 = prog[r, SHIFT]
    for j in range(prog[r, SIZE]):
        v = sc[i0 + j]
        if s0 >= 0:
            v = v * w[s0 + j]
        if t0 >= 0:
            v = v + w[t0 + j]
        sc[o0 + j] = v


OPS = (OpDef("Scale", spec, emit),)
