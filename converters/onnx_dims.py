"""Feature sizes the data input does not declare, read off the weights of its first consumer.

Some exporters write the data input as `[input_dim_0, input_dim_1]`: every size symbolic,
even the feature axis. The converter needs the feature sizes (time and batch may vary,
features may not), and the graph fixes them anyway: the first LSTM/GRU/RNN reading the
input has W (D, G*H, I), a MatMul has its weight's K rows, a Gemm or Conv its own. This
module follows each undeclared axis of the data input through the ops that move axes
around without changing their size (Unsqueeze, Squeeze, Transpose, element-wise ops,
Slice on other axes...) to the first op whose weights fix its size, e.g.

    input [T?, F?] -> Unsqueeze(axes=[1]) -> [T?, 1, F?] -> LSTM X: axis 2 is input_size

An axis whose name says time or batch is never given a size; an axis that reaches a
recurrent op's sequence or batch axis gets none either (it is time or batch).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .onnx_fold import attrs_of, tensor_to_array
from .onnx_inputs import BATCH_WORDS, TIME_WORDS, opset_of

__all__ = ["infer_feature_dims"]

# Ops whose output has the input's shape (or a broadcast of it, for the binary ones).
SAME_SHAPE = {"Identity", "Dropout", "Cast", "CastLike", "Relu", "Sigmoid", "Tanh", "Abs", "Neg",
              "Exp", "Log", "Sqrt", "Reciprocal", "Softsign", "Softplus", "LeakyRelu", "Elu",
              "Selu", "Celu", "HardSigmoid", "HardSwish", "ThresholdedRelu", "Erf", "Gelu", "Mish",
              "Clip", "Sin", "Cos", "Floor", "Ceil", "Round", "Sign", "Softmax", "LogSoftmax"}
BINARY = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "PRelu", "Where"}
MAX_VISITS = 10000


def _constants(model) -> dict[str, np.ndarray]:
    out = {t.name: tensor_to_array(t) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output:
            a = attrs_of(n)
            if "value" in a:
                out[n.output[0]] = tensor_to_array(a["value"])
            elif "value_ints" in a:
                out[n.output[0]] = np.asarray(a["value_ints"], np.int64)
            elif "value_int" in a:
                out[n.output[0]] = np.asarray(a["value_int"], np.int64)
    return out


def _axes_arg(node, consts, opset: int, attrs: dict) -> list[int] | None:
    if "axes" in attrs:
        return [int(v) for v in attrs["axes"]]
    if opset >= 13 and len(node.input) > 1 and node.input[1]:
        c = consts.get(node.input[1])
        return None if c is None else [int(v) for v in np.asarray(c).reshape(-1)]
    return None


def _step(node, idx: int, axis: int, rank: int, consts: dict, opset: int):
    """Follow axis `axis` of a rank-`rank` tensor read by `node` as its input `idx`.
    Returns ("size", n, what) when the node fixes the size, ("next", axis, rank) when the
    axis passes through unchanged in size to output 0, or None."""
    op, a = node.op_type, attrs_of(node)
    if op in ("LSTM", "GRU", "RNN") and idx == 0:
        W = consts.get(node.input[1]) if len(node.input) > 1 else None
        if W is not None and W.ndim == 3 and rank == 3 and axis == 2:
            return "size", int(W.shape[2]), f"{op} W {list(W.shape)}"
        return None
    if op == "MatMul":
        other = consts.get(node.input[1 - idx]) if len(node.input) == 2 else None
        if other is None or other.ndim < 1:
            return None
        if idx == 0 and axis == rank - 1:
            return "size", int(other.shape[0] if other.ndim == 1 else other.shape[-2]), \
                f"MatMul weight {list(other.shape)}"
        if idx == 1 and rank >= 2 and axis == rank - 2:
            return "size", int(other.shape[-1]), f"MatMul weight {list(other.shape)}"
        return None
    if op == "Gemm" and idx in (0, 1) and rank == 2:
        other = consts.get(node.input[1 - idx])
        if other is None or other.ndim != 2:
            return None
        ta, tb = int(a.get("transA", 0)), int(a.get("transB", 0))
        if idx == 0 and axis == (0 if ta else 1):
            return "size", int(other.shape[1 if tb else 0]), f"Gemm weight {list(other.shape)}"
        if idx == 1 and axis == (1 if tb else 0):
            return "size", int(other.shape[0 if ta else 1]), f"Gemm weight {list(other.shape)}"
        return None
    if op == "Conv" and idx == 0:
        W = consts.get(node.input[1]) if len(node.input) > 1 else None
        if W is not None and axis == 1:
            return "size", int(W.shape[1]) * int(a.get("group", 1)), f"Conv weight {list(W.shape)}"
        return None
    if op == "BatchNormalization" and idx == 0 and axis == 1:
        s = consts.get(node.input[1]) if len(node.input) > 1 else None
        return None if s is None else ("size", int(s.size), f"BatchNormalization scale {list(s.shape)}")
    if op == "LayerNormalization" and idx == 0:
        s = consts.get(node.input[1]) if len(node.input) > 1 else None
        k = axis - (rank - (s.ndim if s is not None else 0))
        if s is not None and 0 <= k and s.shape[k] > 1:
            return "size", int(s.shape[k]), f"LayerNormalization scale {list(s.shape)}"
        return "next", axis, rank
    if op in SAME_SHAPE and idx == 0:
        return "next", axis, rank
    if op in BINARY:
        others = [consts.get(x) for k, x in enumerate(node.input) if k != idx and x]
        out_rank = max([rank] + [o.ndim for o in others if o is not None])
        oaxis = axis + out_rank - rank
        for o in others:
            if o is None:
                continue
            k = oaxis - (out_rank - o.ndim)
            if 0 <= k < o.ndim and o.shape[k] > 1:
                return "size", int(o.shape[k]), f"{op} constant {list(o.shape)}"
        return "next", oaxis, out_rank
    if idx != 0:
        return None
    if op == "Unsqueeze":
        axes = _axes_arg(node, consts, opset, a)
        if axes is None:
            return None
        r = rank + len(axes)
        ins = sorted(v + r if v < 0 else v for v in axes)
        keep = [k for k in range(r) if k not in ins]
        return "next", keep[axis], r
    if op == "Squeeze":
        axes = _axes_arg(node, consts, opset, a)
        if axes is None:
            return None
        axes = sorted(v + rank if v < 0 else v for v in axes)
        if axis in axes:
            return None
        return "next", axis - sum(v < axis for v in axes), rank - len(axes)
    if op == "Transpose":
        perm = [int(p) for p in a.get("perm", range(rank - 1, -1, -1))]
        return ("next", perm.index(axis), rank) if axis in perm else None
    if op == "Slice":
        axes = None
        if opset < 10:
            axes = a.get("axes", list(range(len(a.get("starts", [])))))
        elif len(node.input) > 3 and node.input[3]:
            c = consts.get(node.input[3])
            axes = None if c is None else np.asarray(c).reshape(-1).tolist()
        elif len(node.input) > 1:
            c = consts.get(node.input[1])
            axes = None if c is None else list(range(np.asarray(c).size))
        if axes is None or axis in [int(v) + rank if int(v) < 0 else int(v) for v in axes]:
            return None
        return "next", axis, rank
    if op == "Concat":
        ax = int(a.get("axis", 0))
        return None if (ax + rank if ax < 0 else ax) == axis else ("next", axis, rank)
    return None


def _follow(model, name: str, axis: int, rank: int, consts: dict) -> tuple[int, str] | None:
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i, x in enumerate(n.input):
            if x:
                consumers.setdefault(x, []).append((n, i))
    opset = opset_of(model)
    stack, seen = [(name, axis, rank)], set()
    while stack and len(seen) < MAX_VISITS:
        v, ax, r = stack.pop(0)
        if (v, ax, r) in seen:
            continue
        seen.add((v, ax, r))
        for node, idx in consumers.get(v, []):
            res = _step(node, idx, ax, r, consts, opset)
            if res is None:
                continue
            if res[0] == "size":
                where = f"node {node.name!r}" if node.name else f"a {node.op_type} node"
                return res[1], f"{where} ({res[2]})"
            if node.output and node.output[0]:
                stack.append((node.output[0], res[1], res[2]))
    return None


def infer_feature_dims(model, data_name: str, dims: list) -> tuple[list, list[str]]:
    """`dims` of the data input with sizes filled in for the axes that declare none (or
    only a name) and whose size a consumer's weights fix; plus one note per filled axis."""
    out: list[Any] = list(dims)
    todo = []
    for k, d in enumerate(dims):
        if isinstance(d, int) and d > 0:
            continue
        name = d.lower() if isinstance(d, str) else ""
        if name in BATCH_WORDS or "batch" in name or any(w in name for w in TIME_WORDS):
            continue
        todo.append(k)
    if not todo:
        return out, []
    consts = _constants(model)
    notes = []
    for k in todo:
        found = _follow(model, data_name, k, len(dims), consts)
        if found is None:
            continue
        out[k] = found[0]
        declared = f"named {dims[k]!r}" if isinstance(dims[k], str) else "undeclared"
        notes.append(f"data input {data_name!r}: axis {k} ({declared}) taken as {found[0]} "
                     f"features, the size {found[1]} reads")
    return out, notes
