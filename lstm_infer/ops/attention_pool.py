"""AttentionPool: softmax over time of a score per step, then the weighted sum of values
(`a = softmax(score, dim=time); ctx = (a * h).sum(time)`), streamed with O(1) state by
the online-softmax recurrence, with prefix semantics (DESIGN.md): the output at step t is
sum_{s<=t} exp(score_s) h_s / sum_{s<=t} exp(score_s), the source model's result for the
sequence ended at t.

Inputs: `score` (1) and `value` (F). State: `ml` (2: m, the running max of the scores, and
l, the normaliser sum exp(score_s - m)) and `acc` (F, sum exp(score_s - m) value_s).
Per step: m' = max(m, s); a = exp(m - m'); b = exp(s - m'); l = l a + b;
acc = acc a + b x; y = acc / l (l = 0 marks "no step yet": the first step sets m = s).
Subtracting the running max keeps every exp <= 1, as torch's softmax does.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..kernels import KERNEL
from .base import IN, OUT, OpDef, Signature, integer, new_row

OPCODE = 22
VALUE, SIZE, ML, ACC = range(3, 7)  # IN is the score, VALUE the value's offset


def spec(a: dict) -> Signature:
    f = integer(a, "size")
    return Signature([1, f], f, {}, state={"ml": (2, None), "acc": (f, None)})


def emit(em, node, ins: list[int], out: int, state: dict) -> None:
    em.add_row(new_row(OPCODE, {IN: ins[0], VALUE: ins[1], OUT: out, SIZE: node.attrs["size"],
                                ML: state["ml"], ACC: state["acc"]}))


@njit(**KERNEL)
def pool_step(s, x, ml, acc, y):
    """One step: score s, value x (F,) into ml = [m, l] and acc (F,); the prefix result to y."""
    F = x.shape[0]
    if not ml[1] > np.float32(0.0):  # no step yet (or a restored state without one)
        m_new = s
        a = np.float32(0.0)
    else:
        m_new = max(ml[0], s)
        a = np.float32(math.exp(ml[0] - m_new))
    b = np.float32(math.exp(s - m_new))
    l_new = ml[1] * a + b
    ml[0] = m_new
    ml[1] = l_new
    inv = np.float32(1.0) / l_new
    for j in range(F):
        v = acc[j] * a + b * x[j]
        acc[j] = v
        y[j] = v * inv


@njit(**KERNEL)
def step(prog, r, w, st, sc):
    F = prog[r, SIZE]
    x0, o0, a0, m0 = prog[r, VALUE], prog[r, OUT], prog[r, ACC], prog[r, ML]
    pool_step(sc[prog[r, IN]], sc[x0:x0 + F], st[m0:m0 + 2], st[a0:a0 + F], sc[o0:o0 + F])


@njit(**KERNEL)
def _sequence(s, x, ml, acc, y, lengths):
    for b in range(x.shape[1]):
        for t in range(lengths[b]):
            pool_step(s[t, b, 0], x[t, b], ml[b], acc[b], y[t, b])


def run_sequence(plan, node, ins: list[np.ndarray], lengths: np.ndarray,
                 state: dict) -> np.ndarray:
    """Every step with the step's own arithmetic (bit-identical to step()), from `state`
    (ml (B, 2), acc (B, F)), left at each sequence's last step; zeros past its length."""
    s, x = np.ascontiguousarray(ins[0]), np.ascontiguousarray(ins[1])
    y = np.zeros_like(x)
    _sequence(s, x, state["ml"], state["acc"], y, np.ascontiguousarray(lengths, np.int64))
    return y


def describe(node, out_size: int) -> str:
    return f"AttentionPool {out_size} (softmax over time, running, prefix result)"


def example(rng) -> tuple[dict, dict]:
    return {"size": 3}, {}


OPS = (OpDef("AttentionPool", spec, emit, recurrent=True, run_sequence=run_sequence,
             describe=describe, example=example),)
