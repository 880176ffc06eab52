"""Constant folding for the ONNX importer: attributes, initializers, and evaluating a node
whose inputs are all constants.

Constants are numpy arrays. Shape arithmetic produces object arrays holding `Dim`s
(symbolic sizes); the ops that shape computations use (Shape, Gather, Slice, Concat,
Squeeze, Unsqueeze, Reshape, Cast, arithmetic, comparisons, Range, Where...) are
evaluated here directly so they work on such arrays. Any other op with purely numeric
constant inputs is evaluated by `onnx.reference` (one node at a time).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .onnx_sym import Dim, SymError, concrete

INT_BIG = 2 ** 62
INT32_MAX, INT64_MAX = 2 ** 31 - 1, 2 ** 63 - 1


def attrs_of(node) -> dict[str, Any]:
    from onnx import helper
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [x.decode() for x in v]
        out[a.name] = v
    return out


def tensor_to_array(t) -> np.ndarray:
    from onnx import numpy_helper
    return np.array(numpy_helper.to_array(t))


def is_sym_array(x) -> bool:
    return isinstance(x, np.ndarray) and x.dtype == object


def as_ints(x) -> list:
    """A constant int tensor as a list of ints / Dims."""
    arr = np.asarray(x).reshape(-1)
    return [v if isinstance(v, Dim) else int(v) for v in arr.tolist()]


def to_concrete(x: np.ndarray) -> np.ndarray:
    if not is_sym_array(x):
        return x
    return np.vectorize(concrete, otypes=[np.int64])(x) if x.size else x.astype(np.int64)


def _simplify(x: np.ndarray) -> np.ndarray:
    """Object arrays with no Dim left become int64 arrays."""
    if is_sym_array(x) and not any(isinstance(v, Dim) for v in x.reshape(-1)):
        vals = x.reshape(-1).tolist()
        if all(isinstance(v, (int, np.integer, bool, np.bool_)) for v in vals):
            return np.array(vals, dtype=np.int64).reshape(x.shape)
        return np.array(vals).reshape(x.shape)
    return x


def _binop(a, b, fn):
    if is_sym_array(a) or is_sym_array(b):
        a = a.astype(object) if not is_sym_array(a) else a
        b = b.astype(object) if not is_sym_array(b) else b
        out = np.empty(np.broadcast_shapes(a.shape, b.shape), dtype=object)
        for i, (x, y) in enumerate(np.broadcast(a, b)):
            out.reshape(-1)[i] = fn(x, y)
        return _simplify(out)
    return None


def slice_indices(n: int, start, end, step) -> np.ndarray:
    """The positions ONNX Slice selects along an axis of size n, exactly as the spec says:
    a negative start/end counts from the end (+n); then, for a positive step, start and
    end are clamped to [0, n]; for a negative step, start to [0, n-1] and end to [-1, n-1]
    (so INT_MIN as end means "through element 0"); then start, start+step, ... while
    before end. Python's `slice.indices` differs for negative steps (its stop -1 would
    mean "the last element"), so it is not used.

    One case follows onnxruntime rather than the spec's clamping: an end of exactly
    INT32_MAX or INT64_MAX means "no end" (numpy's None) for negative steps too, i.e.
    through element 0, where clamping to n-1 would select nothing. onnxruntime runs the
    files we convert, and every conversion is verified against it."""
    n, start, end, step = int(n), int(concrete(start)), int(concrete(end)), int(concrete(step))
    if step == 0:
        raise SymError("Slice step 0 is invalid (steps must be non-zero)")
    if step < 0 and end in (INT32_MAX, INT64_MAX):
        end = -1 - n   # through element 0, as onnxruntime reads it
    if start < 0:
        start += n
    if end < 0:
        end += n
    if step > 0:
        start, end = min(max(start, 0), n), min(max(end, 0), n)
    else:
        start, end = min(max(start, 0), n - 1), min(max(end, -1), n - 1)
    return np.arange(start, end, step, dtype=np.int64)


def slice_args(ins: list, attrs: dict, opset: int) -> tuple[list, list, list, list]:
    """starts, ends, axes, steps of a Slice node (attributes before opset 10, inputs after);
    the caller checks that they are constants."""
    if opset < 10:
        starts, ends = list(attrs["starts"]), list(attrs["ends"])
        axes = list(attrs.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = as_ints(ins[1]), as_ints(ins[2])
        axes = as_ints(ins[3]) if len(ins) > 3 and ins[3] is not None else list(range(len(starts)))
        steps = as_ints(ins[4]) if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise SymError(f"Slice starts/ends/axes/steps have different lengths "
                       f"({len(starts)}, {len(ends)}, {len(axes)}, {len(steps)})")
    return starts, ends, axes, steps


def fold_node(op: str, node, ins: list, attrs: dict, opset: int) -> list | None:
    """Evaluate `node` on constant inputs; returns its outputs, or None if not foldable here."""
    sym = any(is_sym_array(x) for x in ins if x is not None)
    f = _FOLDERS.get(op)
    if f is not None:
        out = f(ins, attrs, opset)
        if out is not None:
            return [_as_array(x) for x in out]
    if sym:
        ins = [to_concrete(x) if x is not None else None for x in ins]
    return _reference(node, ins, opset)


def _as_array(x):
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, Dim):
        a = np.empty((), dtype=object)
        a[()] = x
        return a
    return np.asarray(x)


def _reference(node, ins: list, opset: int) -> list:
    import onnx
    from onnx import helper
    from onnx.reference import ReferenceEvaluator
    names = list(node.input)
    feeds = {}
    for n, x in zip(names, ins):
        if n:
            feeds[n] = np.asarray(x)
    vin = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.asarray(x).dtype), None)
           for n, x in feeds.items()]
    vout = [helper.make_value_info(n, onnx.TypeProto()) for n in node.output if n]
    g = helper.make_graph([node], "fold", vin, vout)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    res = ReferenceEvaluator(m).run(None, feeds)
    return [np.asarray(r) for r in res]


# ---- folders that understand symbolic (object) arrays ----------------------------------
def _f_shape(ins, a, opset):
    return None  # handled by the op handler (it knows the Dyn's shape)


def _f_gather(ins, a, opset):
    data, ind = ins
    axis = int(a.get("axis", 0))
    ind = np.asarray(ind).astype(np.int64)
    n = data.shape[axis]
    ind = np.where(ind < 0, ind + n, ind)
    return [_simplify(np.take(data, ind, axis=axis))]


def _f_concat(ins, a, opset):
    parts = [np.asarray(x) for x in ins if x is not None]
    if any(is_sym_array(p) for p in parts):
        parts = [p.astype(object) for p in parts]
    return [_simplify(np.concatenate(parts, axis=int(a.get("axis", 0))))]


def _f_unsqueeze(ins, a, opset):
    axes = a.get("axes") if opset < 13 else as_ints(ins[1])
    x = ins[0]
    r = x.ndim + len(axes)
    for ax in sorted(int(v) + r if int(v) < 0 else int(v) for v in axes):
        x = np.expand_dims(x, ax)
    return [x]


def _f_squeeze(ins, a, opset):
    axes = a.get("axes") if opset < 13 else (as_ints(ins[1]) if len(ins) > 1 and ins[1] is not None else None)
    x = ins[0]
    if axes is None:
        return [x.reshape([n for n in x.shape if n != 1])]
    return [np.squeeze(x, axis=tuple(int(v) % x.ndim for v in axes))]


def _f_reshape(ins, a, opset):
    x, shape = ins[0], as_ints(ins[1])
    allowzero = int(a.get("allowzero", 0))
    out = []
    for k, s in enumerate(shape):
        out.append(x.shape[k] if s == 0 and not isinstance(s, Dim) and not allowzero else s)
    return [x.reshape([int(concrete(s)) for s in out])]


def _f_slice(ins, a, opset):
    x = ins[0]
    starts, ends, axes, steps = slice_args(ins, a, opset)
    seen = set()
    for s, e, ax, st in zip(starts, ends, axes, steps):
        ax = int(ax)
        if not -x.ndim <= ax < x.ndim:
            raise SymError(f"Slice axis {ax} out of range for rank {x.ndim}")
        ax %= x.ndim
        if ax in seen:
            raise SymError(f"Slice lists axis {ax} twice")
        seen.add(ax)
        x = np.take(x, slice_indices(x.shape[ax], s, e, st), axis=ax)
    return [x]


def _f_cast(ins, a, opset):
    from onnx import helper
    x = ins[0]
    to = helper.tensor_dtype_to_np_dtype(int(a["to"]))
    if is_sym_array(x):
        if np.dtype(to).kind in "iu":
            return [x]
        return [to_concrete(x).astype(to)]
    return [np.asarray(x).astype(to)]


def _arith(fn):
    def f(ins, a, opset):
        x, y = ins
        r = _binop(x, y, fn)
        if r is not None:
            return [r]
        x, y = np.asarray(x), np.asarray(y)
        res = fn(x, y)
        return [np.asarray(res).astype(np.result_type(x, y)) if fn is not _div else res]
    return f


def _div(x, y):
    if isinstance(x, np.ndarray):
        if x.dtype.kind in "iu" and np.asarray(y).dtype.kind in "iu":
            return np.trunc(x / y).astype(np.result_type(x, y))
        return (x / y).astype(np.result_type(x, y))
    return x // y


def _sym_eq(p, q) -> bool:
    if isinstance(p, Dim) and isinstance(q, Dim) and p == q:
        return True
    try:
        return concrete(p) == concrete(q)
    except SymError:
        raise SymError(f"comparison {p!r} == {q!r} depends on the sequence length or batch "
                       "size") from None


def _f_equal(ins, a, opset):
    x, y = ins
    r = _binop(x, y, _sym_eq)
    return [r.astype(bool) if r is not None else np.equal(x, y)]


def _f_identity(ins, a, opset):
    return [ins[0]]


def _f_range(ins, a, opset):
    s, e, d = (concrete(np.asarray(v).reshape(-1)[0]) for v in ins)
    dt = np.result_type(*[np.asarray(v).dtype if not is_sym_array(v) else np.int64 for v in ins])
    return [np.arange(s, e, d).astype(dt)]


def _f_where(ins, a, opset):
    c, x, y = ins
    if is_sym_array(x) or is_sym_array(y):
        return [_simplify(np.where(c, x.astype(object), y.astype(object)))]
    return [np.where(c, x, y)]


def _f_size(ins, a, opset):
    n: Any = 1
    for s in ins[0].shape:
        n *= s
    return [np.array(n, dtype=np.int64)]


_FOLDERS = {
    "Gather": _f_gather, "Concat": _f_concat, "Unsqueeze": _f_unsqueeze, "Squeeze": _f_squeeze,
    "Reshape": _f_reshape, "Slice": _f_slice, "Cast": _f_cast, "Identity": _f_identity,
    "Add": _arith(lambda x, y: x + y), "Sub": _arith(lambda x, y: x - y),
    "Mul": _arith(lambda x, y: x * y), "Div": _arith(_div), "Equal": _f_equal,
    "Range": _f_range, "Where": _f_where,
}
