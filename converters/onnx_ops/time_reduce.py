"""ReduceMean / ReduceSum / ReduceMax / ReduceMin over the time axis (onnx_ops/norm.py
hands them here): one IR `TimeReduce`, a running reduction of every element of the per-step
value, so the result (read at the last step, READ_LAST) streams with prefix semantics."""
from __future__ import annotations

import numpy as np

from ..onnx_graph import READ_LAST, OnnxValue
from ..onnx_sym import AxisError, Dyn


def time_axes(d: Dyn, red: list[int]) -> list[int]:
    return [k for k in red if "T" in d.axes[k] or "R" in d.axes[k]]


def reduce_over_time(ctx, node, d: Dyn, red: list[int], kind: str, keepdims: bool) -> list:
    what = f"{node.op_type} over time"
    if len(red) != 1 or d.axes[red[0]] != ("T",):
        raise AxisError(f"{what}: axes {red} of {d.describe()} (lstm-infer reduces over the "
                        "time axis alone, in time order)")
    if d.kind != "data" or d.readout is not None:
        raise AxisError(f"{what} of a value that does not change per step")
    k = red[0]
    v = ctx.emit("TimeReduce", node.name or "time_reduce", [d.ref],
                 {"kind": kind, "size": ctx.size(d.ref)})
    axes = list(d.axes)
    if keepdims:
        axes[k] = ()
        idx = d.idx
    else:
        del axes[k]
        idx = d.idx.reshape([n for j, n in enumerate(d.idx.shape) if j != k])
    return [OnnxValue(Dyn("data", v, idx, axes, np.full(ctx.size(v), READ_LAST, np.int64)))]
