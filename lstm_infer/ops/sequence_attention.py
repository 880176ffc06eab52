"""SequenceAttention: multi-head scaled dot-product attention that looks ahead in time
(a torch attention without a causal mask over recurrent outputs, a band reaching into the
future). Step t attends to the steps s of its own sequence with
    (back < 0 or t - s <= back) and (ahead < 0 or s - t <= ahead)
(-1: unbounded), so an output depends on later inputs: a graph with it runs whole
sequences only (`sequence_only`: no program row, `stream()` raises NotStreamableError
naming the node). A causal band (ahead 0) is CausalAttention, which streams.

Inputs q, k, v (E = heads * head_dim each, head h in columns h*D:(h+1)*D); output (E).
The whole-sequence kernel is numpy (one (T, T) score matrix per sequence and head: a
run()-only op, no per-step kernel to compile).
"""
from __future__ import annotations

import numpy as np

from .base import OpDef, Signature, integer, size


def spec(a: dict) -> Signature:
    H, D = integer(a, "heads", hi=4096), integer(a, "head_dim", hi=4096)
    integer(a, "back", lo=-1, hi=1 << 30)
    integer(a, "ahead", lo=-1, hi=1 << 30)
    E = size(H * D)
    return Signature([E, E, E], E, {"scale": ((1,), True)})


def emit(em, node, ins: list[int], out: int, state: dict) -> None:
    """Nothing to step: run() handles it (run_sequence), and such graphs never stream."""


def allowed(T: int, back: int, ahead: int) -> np.ndarray:
    """(T, T) bool: query t may attend to key s."""
    d = np.arange(T)[:, None] - np.arange(T)[None, :]   # t - s
    ok = np.ones((T, T), bool)
    if back >= 0:
        ok &= d <= back
    if ahead >= 0:
        ok &= -d <= ahead
    return ok


def run_sequence(plan, node, ins: list[np.ndarray], lengths: np.ndarray) -> np.ndarray:
    """(T, B, E) inputs; each sequence attends within its own length; zeros past it."""
    a = node.attrs
    H, D = a["heads"], a["head_dim"]
    q, k, v = ins
    T, B, _ = q.shape
    scale = np.float64(node.weights["scale"][0])
    y = np.zeros(q.shape, np.float32)
    for b in range(B):
        L = int(lengths[b])
        if L == 0:
            continue
        ok = allowed(L, a["back"], a["ahead"])
        qs, ks, vs = (x[:L, b].astype(np.float64).reshape(L, H, D).transpose(1, 0, 2)
                      for x in (q, k, v))
        s = np.where(ok, scale * qs @ ks.transpose(0, 2, 1), -np.inf)   # (H, L, L)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        y[:L, b] = (s @ vs).transpose(1, 0, 2).reshape(L, H * D)
    return y


def describe(node, out_size: int) -> str:
    a = node.attrs
    span = lambda n: "all" if n < 0 else str(n)  # noqa: E731
    return (f"SequenceAttention {a['heads']} heads x {a['head_dim']} ({span(a['back'])} steps "
            f"back, {span(a['ahead'])} ahead; whole sequence only)")


def example(rng) -> tuple[dict, dict]:
    return ({"heads": 2, "head_dim": 2, "back": -1, "ahead": 1},
            {"scale": np.array([0.7], np.float32)})


OPS = (OpDef("SequenceAttention", spec, emit, sequence_only=True, run_sequence=run_sequence,
             describe=describe, example=example),)
