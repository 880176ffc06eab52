"""Helpers shared by the op converters."""
from __future__ import annotations

import numpy as np

from ..onnx_fold import as_ints, is_sym_array, to_concrete
from ..onnx_graph import OnnxConversionError, OnnxValue
from ..onnx_sym import AxisError, Dim, Dyn, SymError
from .attention_pool import moved


def const_dyn(arr) -> Dyn:
    """A numpy constant as a Dyn of kind "const" (feature axes only)."""
    arr = np.asarray(arr)
    if is_sym_array(arr):
        arr = to_concrete(arr)
    axes = [("F",) if n > 1 else () for n in arr.shape]
    return Dyn("const", arr.reshape(-1), np.arange(arr.size, dtype=np.int64).reshape(arr.shape), axes)


def dims_to_axes(dims: list) -> tuple[list, tuple]:
    """Tokens and feature sizes of a shape given as ints / Dims."""
    axes, fs = [], []
    for d in dims:
        if isinstance(d, Dim):
            toks = ("T",) * d.t + ("B",) * d.b
            if len(toks) != d.t + d.b or d.t > 1 or d.b > 1:
                raise SymError(f"unsupported symbolic size {d!r}")
            if d.c > 1:
                toks = toks + ("F",)
            axes.append(toks)
            fs.append(d.c)
        else:
            n = int(d)
            axes.append(("F",) if n > 1 else ())
            fs.append(n)
    return axes, tuple(fs)


def sym_const(value: np.ndarray, dims: list) -> Dyn:
    """A constant filled with one value over a (possibly symbolic) shape."""
    axes, fs = dims_to_axes(dims)
    return Dyn("const", np.asarray(value).reshape(-1)[:1], np.zeros(fs, np.int64), axes)


def to_dyn(x) -> Dyn:
    if isinstance(x, OnnxValue):
        return x.need()
    return const_dyn(x)


def move(v: OnnxValue, f, reshapes: bool = False) -> OnnxValue:
    """Apply a data-movement transform to each part of an OnnxValue (errors on data are kept
    and raised where the data is needed; state tracing just stops). `reshapes`: `f` only
    reshapes/transposes, so pending softmax weights over time move with it."""
    if reshapes and v.pending is not None:
        out = moved(v, f)
        if out is not None:
            return out
    data, why, err = None, v.why, None
    if v.data is not None:
        try:
            data = f(v.data)
        except (AxisError, SymError, OnnxConversionError) as e:
            err = e
    ids = None
    if v.ids is not None:
        try:
            ids = f(v.ids)
        except Exception:  # state tracing is best effort; pairing then reports it
            ids = None
    return OnnxValue(data, ids, str(err) if err is not None else why, err=err if err is not None else v.err)


def ints(x, what: str) -> list:
    if isinstance(x, OnnxValue):
        raise OnnxConversionError(f"{what} must be a constant (it depends on the input data)")
    return as_ints(x)


def scalar(x, what: str) -> float:
    if isinstance(x, OnnxValue):
        raise OnnxConversionError(f"{what} must be a constant")
    arr = np.asarray(to_concrete(np.asarray(x)) if is_sym_array(np.asarray(x)) else x)
    if arr.size != 1:
        raise OnnxConversionError(f"{what} must be a single value, got shape {arr.shape}")
    return float(arr.reshape(-1)[0])


def is_val(x) -> bool:
    return isinstance(x, OnnxValue)
