"""Normalisation and reductions: BatchNormalization (folded to one Scale),
LayerNormalization, Softmax / LogSoftmax, ReduceMean / ReduceSum / ReduceMax / ReduceMin
(over time: onnx_ops/time_reduce.py)."""
from __future__ import annotations

import numpy as np

from ..onnx_graph import OnnxConversionError, OnnxValue
from ..onnx_sym import AxisError, Dyn, norm_axis, transpose
from .common import ints, is_val, to_dyn
from .attention_pool import WEIGHTED, is_pending, pooled_sum, softmax_over_time
from .elementwise import affine
from .registry import op
from .time_reduce import reduce_over_time, time_axes


@op("BatchNormalization")
def _batchnorm(ctx, node, ins, a):
    x, scale, bias, mean, var = ins[:5]
    if any(is_val(v) for v in (scale, bias, mean, var)):
        raise OnnxConversionError("BatchNormalization parameters must be constants")
    if int(a.get("training_mode", 0)):
        raise OnnxConversionError("BatchNormalization in training mode is not supported")
    if len(node.output) > 1 and any(node.output[1:]):
        raise OnnxConversionError("BatchNormalization running-statistics outputs are not supported")
    d = to_dyn(x)
    eps = float(a.get("epsilon", 1e-5))
    s = np.asarray(scale, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    t = np.asarray(bias, np.float64) - np.asarray(mean, np.float64) * s
    shape = (-1,) + (1,) * (d.rank - 2)
    return [OnnxValue(affine(ctx, node, d, scale=s.reshape(shape), shift=t.reshape(shape)))]


@op("LayerNormalization")
def _layernorm(ctx, node, ins, a):
    x, scale = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    if is_val(scale) or is_val(bias):
        raise OnnxConversionError("LayerNormalization scale/bias must be constants")
    if len(node.output) > 1 and any(node.output[1:]):
        raise OnnxConversionError("LayerNormalization Mean/InvStdDev outputs are not supported")
    d = to_dyn(x)
    axis = norm_axis(int(a.get("axis", -1)), d.rank)
    for k in range(axis, d.rank):
        if not d.is_feature_axis(k):
            raise AxisError(f"LayerNormalization over axis {k} of {d.describe()}, which holds time/batch")
    m = ctx.as_data(d)
    fs = d.fshape[axis:]
    size = int(np.prod(fs, dtype=np.int64))
    rows = int(m.idx.size // size)
    w = np.broadcast_to(np.asarray(scale, np.float32), fs).reshape(-1)
    b = None if bias is None else np.broadcast_to(np.asarray(bias, np.float32), fs).reshape(-1)
    v = ctx.emit("LayerNorm", node.name or "layernorm", [m.ref],
                 {"size": size, "rows": rows, "eps": float(a.get("epsilon", 1e-5))},
                 {"weight": w, "bias": b})
    return [OnnxValue(Dyn("data", v, m.idx, m.axes, ctx.mixed_readout(m, m.idx.size, node.op_type)))]


def _grouped(ctx, node, d: Dyn, red: list[int], emit):
    """Bring axes `red` (feature axes) innermost, contiguous; `emit(value, group)` -> value
    of the same size laid out the same way. Returns the Dyn in the original axis order."""
    for k in red:
        if not d.is_feature_axis(k):
            raise AxisError(f"{node.op_type} over axis {k} of {d.describe()}, which holds time/batch")
    keep = [k for k in range(d.rank) if k not in red]
    t = ctx.as_data(transpose(d, keep + red))
    group = int(np.prod([d.fshape[k] for k in red], dtype=np.int64))
    v = emit(t.ref, group)
    inv = np.argsort(keep + red)
    idx = t.idx.transpose(inv)
    return Dyn("data", v, idx, d.axes, ctx.mixed_readout(t, t.idx.size, node.op_type))


@op("Softmax", "LogSoftmax")
def _softmax(ctx, node, ins, a):
    d = to_dyn(ins[0])
    kind = "softmax" if node.op_type == "Softmax" else "log_softmax"
    if ctx.opset < 13:
        axis = norm_axis(int(a.get("axis", 1)), d.rank)
        red = list(range(axis, d.rank))
    else:
        red = [norm_axis(int(a.get("axis", -1)), d.rank)]
    if any("T" in d.axes[k] for k in red):
        return [softmax_over_time(ctx, node, d, red)]

    def emit(v, group):
        return ctx.emit("Activation", node.name or kind, [v],
                        {"kind": kind, "size": ctx.size(v), "axis_size": group})
    return [OnnxValue(_grouped(ctx, node, d, red, emit))]


@op("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin")
def _reduce(ctx, node, ins, a):
    kind = node.op_type[len("Reduce"):].lower()
    weights = is_pending(ins[0], WEIGHTED)
    d = ins[0].pending[3] if weights else to_dyn(ins[0])
    axes_from_input = (node.op_type == "ReduceSum" and ctx.opset >= 13) or ctx.opset >= 18
    if axes_from_input:
        axes = ints(ins[1], "reduce axes") if len(ins) > 1 and ins[1] is not None else None
    else:
        axes = a.get("axes")
    if not axes:
        if int(a.get("noop_with_empty_axes", 0)):
            return [ins[0]]
        axes = list(range(d.rank))
    red = sorted({norm_axis(k, d.rank) for k in axes})
    keepdims = int(a.get("keepdims", 1))
    if weights and kind == "sum":
        return pooled_sum(ctx, node, ins[0], red, bool(keepdims))
    if weights:
        ins[0].need()
    if time_axes(d, red):
        return reduce_over_time(ctx, node, d, red, kind, bool(keepdims))
    for k in red:
        if not d.is_feature_axis(k):
            what = "time" if "T" in d.axes[k] else "batch"
            raise AxisError(f"{node.op_type} over the {what} axis {k} of {d.describe()}: a "
                            "reduction across time steps/batch entries is not per-step")
    keep = [k for k in range(d.rank) if k not in red]
    group = int(np.prod([d.fshape[k] for k in red], dtype=np.int64))
    if group == 1:
        out = d
    else:
        t = ctx.as_data(transpose(d, keep + red))
        outer = int(t.idx.size // group)
        v = ctx.emit("Reduce", node.name or "reduce", [t.ref],
                     {"kind": kind, "outer": outer, "axis": group, "inner": 1})
        kshape = [d.fshape[k] for k in keep]
        idx = np.arange(outer, dtype=np.int64).reshape(kshape) if kshape else np.zeros((), np.int64)
        full = np.expand_dims(idx, [d.rank - len(red) + i for i in range(len(red))]) if red else idx
        # full has axes keep + red (red of size 1); back to the original order
        inv = np.argsort(keep + red)
        idx_full = full.transpose(inv)
        axes = [() if k in red else d.axes[k] for k in range(d.rank)]
        out = Dyn("data", v, idx_full, axes, ctx.mixed_readout(t, outer, node.op_type))
    if not keepdims:
        keepk = [k for k in range(d.rank) if k not in red]
        out = Dyn(out.kind, out.ref, out.idx.reshape([out.idx.shape[k] for k in keepk]),
                  [out.axes[k] for k in keepk], out.readout)
    else:
        axes = [() if k in red else out.axes[k] for k in range(d.rank)]
        out = Dyn(out.kind, out.ref, out.idx.reshape([1 if k in red else out.idx.shape[k]
                                                       for k in range(d.rank)]), axes, out.readout)
    return [OnnxValue(out)]
