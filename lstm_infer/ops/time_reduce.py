"""TimeReduce: a running mean, sum, max or min over time (torch `x.mean(1)`, Keras
GlobalAveragePooling1D, ONNX ReduceMean over the time axis), streamed with prefix
semantics (DESIGN.md): the output at step t is the reduction of steps 0..t, which is what
the source model returns for the sequence ended at t.

Per step (F features): n += 1; acc = acc + x (mean, sum) or max(acc, x) / min(acc, x)
(acc = x at the first step); y = acc / n (mean) or acc.
State: `acc` (F) and `count` (1, the number of steps so far as a float32: exact up to
2**24 steps; a longer mean keeps dividing by 2**24, documented in FORMAT.md).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..kernels import KERNEL
from .base import IN, OUT, OpDef, Signature, choice, integer, new_row
from .reduce import REDUCE_CODES, REDUCE_KINDS

OPCODE = 21
KIND, SIZE, ACC, COUNT = range(3, 7)


def spec(a: dict) -> Signature:
    choice(a, "kind", REDUCE_KINDS, "time reduction kind")
    f = integer(a, "size")
    return Signature([f], f, {}, state={"acc": (f, None), "count": (1, None)})


def emit(em, node, ins: list[int], out: int, state: dict) -> None:
    a = node.attrs
    em.add_row(new_row(OPCODE, {IN: ins[0], OUT: out, KIND: REDUCE_CODES[a["kind"]],
                                SIZE: a["size"], ACC: state["acc"], COUNT: state["count"]}))


@njit(**KERNEL)
def accumulate(x, acc, cnt, y, kind):
    """One step: x (F,) into the accumulators acc (F,), cnt (1,); the prefix result to y."""
    F = x.shape[0]
    n = cnt[0] + np.float32(1.0)
    first = cnt[0] < np.float32(0.5)  # a restored state with count < 1 starts afresh
    cnt[0] = n
    for j in range(F):
        v = x[j]
        if first:
            a = v
        elif kind <= 1:
            a = acc[j] + v
        elif kind == 2:
            a = max(acc[j], v)
        else:
            a = min(acc[j], v)
        acc[j] = a
        y[j] = a / n if kind == 0 else a


@njit(**KERNEL)
def step(prog, r, w, st, sc):
    F = prog[r, SIZE]
    i0, o0, a0 = prog[r, IN], prog[r, OUT], prog[r, ACC]
    c0 = prog[r, COUNT]
    accumulate(sc[i0:i0 + F], st[a0:a0 + F], st[c0:c0 + 1], sc[o0:o0 + F], prog[r, KIND])


@njit(**KERNEL)
def _sequence(x, acc, cnt, y, lengths, kind):
    for b in range(x.shape[1]):
        for t in range(lengths[b]):
            accumulate(x[t, b], acc[b], cnt[b], y[t, b], kind)


def run_sequence(plan, node, ins: list[np.ndarray], lengths: np.ndarray,
                 state: dict) -> np.ndarray:
    """Every step of every sequence with the step's own arithmetic (bit-identical to
    step()), from `state` (acc (B, F), count (B, 1)), left at each sequence's last step;
    steps past a sequence's length are zero."""
    x = np.ascontiguousarray(ins[0])
    y = np.zeros_like(x)
    _sequence(x, state["acc"], state["count"], y, np.ascontiguousarray(lengths, np.int64),
              REDUCE_CODES[node.attrs["kind"]])
    return y


def describe(node, out_size: int) -> str:
    return f"TimeReduce {node.attrs['kind']} over time {out_size} (running, prefix result)"


def example(rng) -> tuple[dict, dict]:
    return {"kind": "max", "size": 3}, {}


OPS = (OpDef("TimeReduce", spec, emit, recurrent=True, run_sequence=run_sequence,
             describe=describe, example=example),)
