"""Attention pooling in an ONNX graph: `Softmax` over the time axis of one score per step,
`Mul` by the sequence h, `ReduceSum` over time (torch's `a = softmax(v(tanh(W(h))), dim=1);
(a * h).sum(1)` as both torch.onnx exporters write it) -> one IR `AttentionPool(score, h)`,
an online softmax with O(1) state that streams with prefix semantics (the value at step t
is the pooled result for the sequence ended at t, read at the last step).

The softmax and the product are held back as `OnnxValue.pending` (no data: any other
consumer fails with `why`, which names the pattern) until the ReduceSum completes it; the
weights may be reshaped, transposed or (un)squeezed in between (torch's
`softmax(score.squeeze(-1), 1).unsqueeze(-1) * h`)."""
from __future__ import annotations

import numpy as np

from ..onnx_graph import READ_LAST, OnnxValue
from ..onnx_sym import AxisError, Dyn

SOFTMAX, WEIGHTED = "softmax_time", "weighted"
PATTERN = ("attention pooling is Softmax over time of one score per step, Mul by the "
           "sequence, ReduceSum over time")


def softmax_over_time(ctx, node, d: Dyn, red: list[int]) -> OnnxValue:
    """Softmax whose axes `red` include time: held back as pending (module docstring)."""
    what = f"{node.op_type} over time"
    t = [k for k in red if "T" in d.axes[k]]
    if node.op_type != "Softmax" or len(t) != 1 or d.axes[t[0]] != ("T",) or any(
            d.fshape[k] != 1 for k in red if k != t[0]):
        raise AxisError(f"{what}: axes {red} of {d.describe()} (only {PATTERN})")
    if d.kind != "data" or d.readout is not None:
        raise AxisError(f"{what} of a value that does not change per step")
    s = ctx.as_data(d)
    if s.idx.size != 1:
        raise AxisError(f"{what} of {s.idx.size} scores per step ({d.describe()}): {PATTERN}")
    return OnnxValue(None, why=f"node {node.name!r}: the softmax over time is only read by "
                     f"reshapes, Mul and ReduceSum over time ({PATTERN})", pending=(SOFTMAX, d, s.ref))


def moved(v: OnnxValue, f) -> OnnxValue | None:
    """Softmax weights through a reshape/transpose/(un)squeeze `f` (one element per step:
    only the time and batch axes move); None when `v` holds none or `f` refuses."""
    if v.pending is None or v.pending[0] != SOFTMAX:
        return None
    try:
        shaped = f(v.pending[1])
    except (AxisError, ValueError):
        return None
    return OnnxValue(None, why=v.why, pending=(SOFTMAX, shaped, v.pending[2]))


def is_pending(x, kind: str) -> bool:
    return isinstance(x, OnnxValue) and x.pending is not None and x.pending[0] == kind


def weighted(ctx, node, a: OnnxValue, other) -> OnnxValue:
    """softmax-over-time weights * the sequence h (same time axis): still pending."""
    _, w, score = a.pending
    if not isinstance(other, OnnxValue) or other.data is None:
        raise AxisError(f"Mul of softmax weights over time by a constant: {PATTERN}")
    h = other.need()
    t, b = w.axis_of("T"), w.axis_of("B")
    if (h.kind != "data" or h.readout is not None or h.rank != w.rank or w.axes[t] != ("T",)
            or h.axes[t] != ("T",) or (b is not None and "B" not in h.axes[b])):
        raise AxisError(f"Mul of softmax weights over time {w.describe()} by {h.describe()}: "
                        f"{PATTERN} (the sequence with the same time and batch axes)")
    return OnnxValue(None, why=f"node {node.name!r}: softmax weights times a sequence are "
                     f"only read by ReduceSum over time ({PATTERN})", pending=(WEIGHTED, score, t, h))


def pooled_sum(ctx, node, x: OnnxValue, red: list[int], keepdims: bool) -> list:
    """ReduceSum over time of softmax weights * h: one AttentionPool."""
    _, s, t, h = x.pending
    if red != [t]:
        raise AxisError(f"ReduceSum over axes {red} of softmax weights times a sequence: "
                        f"{PATTERN} (over the softmax's time axis {t} alone)")
    m = ctx.as_data(h)
    size = ctx.size(m.ref)
    v = ctx.emit("AttentionPool", node.name or "attention_pool", [s, m.ref], {"size": size})
    axes = list(m.axes)
    if keepdims:
        axes[t] = ()
        idx = m.idx
    else:
        del axes[t]
        idx = m.idx.reshape([n for j, n in enumerate(m.idx.shape) if j != t])
    return [OnnxValue(Dyn("data", v, idx, axes, np.full(size, READ_LAST, np.int64)))]


def pooled_matmul(ctx, node, a: OnnxValue, other) -> list:
    """MatMul(weights^T (..., 1, T), h (..., T, F)) (torch's `bmm(a.transpose(1, 2), h)`):
    the same AttentionPool, keeping the size-1 query axis."""
    _, w, score = a.pending
    if not isinstance(other, OnnxValue) or other.data is None:
        raise AxisError(f"MatMul of softmax weights over time by a constant: {PATTERN}")
    h = other.need()
    b = w.axis_of("B")
    if (w.rank < 2 or w.axes[-1] != ("T",) or w.fshape[-2] != 1 or h.kind != "data"
            or h.readout is not None or h.rank != w.rank or h.axes[-2] != ("T",)
            or (b is not None and "B" not in h.axes[b])):
        raise AxisError(f"MatMul of softmax weights over time {w.describe()} by {h.describe()}: "
                        "attention pooling as a product is weights (..., 1, T) @ h (..., T, F)")
    pend = OnnxValue(None, pending=(WEIGHTED, score, h.rank - 2, h))
    return pooled_sum(ctx, node, pend, [h.rank - 2], True)
