"""FirstStep: every step sees the value at step 0 of its sequence (a reverse layer's
final state, ONNX `Y_h` of the reverse direction, used by later ops). It reads another
time step, so a graph with it runs whole sequences only: no program row, no stream."""
from __future__ import annotations

import numpy as np

from .base import OpDef, Signature, integer


def spec(a: dict) -> Signature:
    f = integer(a, "size")
    return Signature([f], f, {})


def emit(em, node, ins: list[int], out: int, state: dict) -> None:
    """Nothing to step: run() handles it (run_sequence), and such graphs never stream."""


def run_sequence(plan, node, ins: list[np.ndarray], lengths: np.ndarray) -> np.ndarray:
    x = ins[0]
    return np.ascontiguousarray(np.broadcast_to(x[:1], x.shape))


def describe(node, out_size: int) -> str:
    return f"FirstStep {out_size} (value at step 0, whole sequence only)"


OPS = (OpDef("FirstStep", spec, emit, sequence_only=True, run_sequence=run_sequence,
             describe=describe),)
