"""History: the last `frames` inputs, oldest first, `dilation` steps apart; a causal
convolution over time is a History followed by a per-step convolution or Linear.

Per step: y = [x_{t-(K-1)D}, ..., x_{t-D}, x_t] (K = frames, D = dilation), size K*F.
State `past`: the (K-1)*D previous inputs, oldest first, zeros at the start (the zero
padding of a causal convolution). So the op streams with bounded state of its own
(DESIGN.md: "a causal convolution over time keeps its last k-1 inputs").
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..kernels import KERNEL
from .base import IN, OUT, OpDef, Signature, integer, new_row, size

OPCODE = 20  # opcodes only need to be unique (checked by ops/__init__)
SIZE, FRAMES, DILATION, PAST = range(3, 7)


def spec(a: dict) -> Signature:
    f, k = integer(a, "size"), integer(a, "frames", lo=2, hi=4096)
    d = integer(a, "dilation", default=1, hi=4096)
    return Signature([f], size(k * f), {}, state={"past": (size((k - 1) * d * f), None)})


def emit(em, node, ins: list[int], out: int, state: dict) -> None:
    a = node.attrs
    em.add_row(new_row(OPCODE, {IN: ins[0], OUT: out, SIZE: a["size"], FRAMES: a["frames"],
                                DILATION: a.get("dilation", 1), PAST: state["past"]}))


@njit(**KERNEL)
def step(prog, r, w, st, sc):
    F = prog[r, SIZE]
    K = prog[r, FRAMES]
    D = prog[r, DILATION]
    L = (K - 1) * D
    x = sc[prog[r, IN]:prog[r, IN] + F]
    out = sc[prog[r, OUT]:prog[r, OUT] + K * F]
    past = st[prog[r, PAST]:prog[r, PAST] + L * F]
    for i in range(K - 1):  # frame i is x_{t-(K-1-i)D} = past[i*D]
        src = past[i * D * F:(i * D + 1) * F]
        dst = out[i * F:(i + 1) * F]
        for j in range(F):
            dst[j] = src[j]
    last = out[(K - 1) * F:K * F]
    for j in range(F):
        last[j] = x[j]
    for j in range((L - 1) * F):  # drop the oldest frame, append x_t
        past[j] = past[j + F]
    newest = past[(L - 1) * F:L * F]
    for j in range(F):
        newest[j] = x[j]


def run_sequence(plan, node, ins: list[np.ndarray], lengths: np.ndarray,
                 state: dict) -> np.ndarray:
    """All steps at once: the input behind its L = (K-1)*D past frames (`state["past"]`,
    (B, L*F), zeros at the start; updated in place to the last L frames of each sequence),
    K shifted views side by side; steps past a sequence's length are zero, as for the
    recurrent ops."""
    x = ins[0]
    T, B, F = x.shape
    K, D = node.attrs["frames"], node.attrs.get("dilation", 1)
    L = (K - 1) * D
    past = state["past"]
    xp = np.concatenate([past.reshape(B, L, F).transpose(1, 0, 2), x], axis=0)
    out = np.concatenate([xp[i * D:i * D + T] for i in range(K)], axis=-1)
    for b in range(B):
        n = int(lengths[b])
        out[n:, b] = 0.0
        past[b] = xp[n:n + L, b].reshape(-1)
    return np.ascontiguousarray(out)


def describe(node, out_size: int) -> str:
    a = node.attrs
    dil = f", dilation {a['dilation']}" if a.get("dilation", 1) > 1 else ""
    return f"History {a['frames']} x {a['size']}{dil}"


def example(rng) -> tuple[dict, dict]:
    return {"size": 3, "frames": 3, "dilation": 2}, {}


OPS = (OpDef("History", spec, emit, recurrent=True, run_sequence=run_sequence,
             describe=describe, example=example),)
