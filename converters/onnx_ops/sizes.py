"""Ops on sizes that may be symbolic (the sequence length T and batch size B are `Dim`s):
Shape and Size read them, ConstantOfShape and Expand build tensors of such sizes (a
constant with symbolic broadcast axes, or a per-step value broadcast over them).
"""
from __future__ import annotations

import numpy as np

from ..onnx_fold import as_ints, tensor_to_array
from ..errors import OnnxConversionError
from ..onnx_graph import READ_ANY, OnnxValue
from ..onnx_sym import AxisError, Dim, Dyn, broadcast_axes, dims_product
from .common import const_dyn, dims_to_axes, ints, is_val, move, sym_const
from .registry import op


@op("Shape")
def _shape(ctx, node, ins, a):
    x = ins[0]
    if is_val(x):
        d = x.data if x.data is not None else x.ids
        if d is None:
            x.need()
        dims = d.dims()
    else:
        dims = list(np.asarray(x).shape)
    start, end = a.get("start", 0), a.get("end", None)
    dims = dims[slice(start, end)]
    arr = np.empty(len(dims), dtype=object)
    for i, v in enumerate(dims):
        arr[i] = v
    if not any(isinstance(v, Dim) for v in dims):
        arr = np.array([int(v) for v in dims], dtype=np.int64)
    return [arr]


@op("Size")
def _size(ctx, node, ins, a):
    out = _shape(ctx, node, ins, {})[0]
    p = dims_product(list(out))
    if isinstance(p, Dim):
        arr = np.empty((), dtype=object)
        arr[()] = p
        return [arr]
    return [np.array(int(p), np.int64)]


@op("ConstantOfShape")
def _constant_of_shape(ctx, node, ins, a):
    value = tensor_to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
    dims = as_ints(ins[0])
    if not any(isinstance(d, Dim) for d in dims):
        return [np.full([int(d) for d in dims], value.reshape(-1)[0], dtype=value.dtype)]
    return [OnnxValue(sym_const(value, dims))]


@op("Expand")
def _expand(ctx, node, ins, a):
    x, shape = ins
    dims = ints(shape, "Expand shape")
    if not is_val(x) and not any(isinstance(d, Dim) for d in dims):
        arr = np.asarray(x)
        return [arr * np.ones([int(d) for d in dims], dtype=arr.dtype)]
    t_axes, t_fs = dims_to_axes(dims)

    def f(d: Dyn) -> Dyn:
        axes, fs = broadcast_axes(d.axes, d.fshape, t_axes, t_fs)
        idx = np.broadcast_to(d.idx.reshape((1,) * (len(fs) - d.rank) + d.fshape), fs)
        out = d.with_(np.ascontiguousarray(idx), axes)
        if d.kind == "data" and d.readout is not None and any("T" in t for t in axes):
            if np.any(d.readout != READ_ANY):
                raise AxisError("Expand of a final-state value over time")
            out.readout = None
        return out
    if not is_val(x):
        x = OnnxValue(const_dyn(x))
    return [move(x, f)]


@op("Tile")
def _tile(ctx, node, ins, a):
    """Tile by repeat counts that may be symbolic (PaddlePaddle's fill_constant_batch_size_like
    tiles a zero state by [batch, 1, 1]): an axis of size 1 tiled by a symbolic count is an
    Expand to that size; fixed counts tile the constant here."""
    x, reps = ins
    r = ints(reps, "Tile repeats")
    if isinstance(x, OnnxValue):
        raise OnnxConversionError("Tile of per-step data is not supported (only of constants)")
    arr = np.asarray(x)
    if len(r) != arr.ndim:
        raise OnnxConversionError(f"Tile repeats {len(r)} values for a rank-{arr.ndim} tensor")
    fixed = [1 if isinstance(k, Dim) else int(k) for k in r]
    arr = np.tile(arr, fixed)
    if not any(isinstance(k, Dim) for k in r):
        return [arr]
    dims = []
    for k, n in zip(r, arr.shape):
        if isinstance(k, Dim) and n != 1:
            raise OnnxConversionError(f"Tile by a symbolic count {k!r} of an axis of size {n} "
                                      "(only size-1 axes can be tiled to the batch/sequence size)")
        dims.append(k if isinstance(k, Dim) else int(n))
    shape = np.empty(len(dims), dtype=object)
    shape[:] = dims
    return _expand(ctx, node, [arr, shape], {})
