"""Data movement and shape bookkeeping: Reshape, Flatten, Transpose, Squeeze, Unsqueeze,
Slice, Gather, Concat, Split, Pad, Identity/Dropout, Cast (Shape, Size, ConstantOfShape
and Expand are in sizes.py).

On per-step tensors these only rewrite the index map of the Dyn (onnx_sym); an IR
`Gather` appears later, only if an op needs the elements in a new order. Selecting the
last time step (`x[:, -1]`) turns a sequence into a final value (read at the last step).
"""
from __future__ import annotations

import numpy as np

from ..onnx_fold import is_sym_array, slice_args, slice_indices
from ..onnx_graph import READ_ANY, READ_LAST, OnnxConversionError, OnnxValue
from ..onnx_sym import (HINTS, AxisError, Dim, Dyn, SymError, concrete, dim_of, dims_product,
                        TOKEN_WORD, drop_time, feature_slice, norm_axis, pad, reshape,
                        resolve_reshape_target, reverse_time, squeeze, take, transpose, unsqueeze)
from . import embedding
from .common import ints, is_val, move, scalar, to_dyn
from .conv2d import causal_time_pad
from .registry import op


def _last_step(ctx, d: Dyn, axis: int, keep: bool, what: str) -> Dyn:
    out = drop_time(d, axis, keep)
    if d.kind == "data":
        if d.readout is not None:
            raise AxisError(f"{what}: value has no time axis left")
        out.readout = np.full(ctx.size(d.ref), READ_LAST, np.int64)
    return out


def _is_end(e, dim) -> bool:
    if isinstance(e, Dim):
        return e == dim
    e = int(e)
    if e >= 2 ** 31 - 1:
        return True
    try:
        return e >= concrete(dim)
    except SymError:
        return False


def _is_start(s, dim) -> bool:
    if isinstance(s, Dim):
        return False
    s = int(s)
    if s == 0:
        return True
    try:
        return s <= -concrete(dim)
    except SymError:
        return False


def _is_reverse_start(s, dim) -> bool:
    """Does start `s` with step -1 clamp to the last element (n - 1) for every n?"""
    if isinstance(s, Dim):
        return False
    s = int(s)
    if s == -1 or s >= 2 ** 31 - 1:
        return True
    try:
        return s >= concrete(dim) - 1
    except SymError:
        return False


def _is_reverse_end(e, dim) -> bool:
    """Does end `e` with step -1 clamp to -1 (through element 0) for every n? (INT_MAX
    does too, as onnxruntime reads it: see onnx_fold.slice_indices)"""
    if isinstance(e, Dim):
        return False
    e = int(e)
    if e <= -(2 ** 31) or e in (2 ** 31 - 1, 2 ** 63 - 1):
        return True
    try:
        return e <= -concrete(dim) - 1
    except SymError:
        return False


def slice_axis(ctx, d: Dyn, ax: int, s, e, st: int) -> Dyn:
    if d.is_feature_axis(ax):
        return feature_slice(d, ax, slice_indices(d.fshape[ax], s, e, st))
    dim = dim_of(d.axes[ax], d.fshape[ax])
    if st == 1 and _is_start(s, dim) and _is_end(e, dim):
        return d
    if st == -1 and d.axes[ax] in (("T",), ("R",)) and _is_reverse_start(s, dim) \
            and _is_reverse_end(e, dim):
        return reverse_time(d, ax)   # x[::-1] over time, as a hand-built bidirectional layer does
    if d.axes[ax] == ("T",) and st == 1 and _is_end(e, dim):
        t0 = HINTS.get("T")
        if not isinstance(s, Dim) and (int(s) == -1 or (t0 and int(s) == t0 - 1)):
            if int(s) != -1:
                ctx.warnings.append(f"Slice [{s}:] on the time axis taken as the last step "
                                    f"(the file fixes {t0} time steps)")
            return _last_step(ctx, d, ax, True, "Slice")
    what = _axis_word(d.axes[ax])
    raise AxisError(f"Slice [{s}:{e}:{st}] on the {what} axis {ax} {d.describe()}: only the whole "
                    "axis, the whole time axis reversed (step -1) or (time) the last step can be "
                    "selected; other ranges would need future or past steps"
                    + (UNROLLED if what.startswith("time") else ""))


def _axis_word(tokens: tuple) -> str:
    return " and ".join(TOKEN_WORD[t] for t in tokens if t in TOKEN_WORD) or "feature"


UNROLLED = (". A graph that picks single time steps is usually a recurrence unrolled over a fixed "
            "number of steps (torch.onnx.export(dynamo=True) writes nn.RNN that way, and "
            "onnxruntime then accepts only that length); export with dynamo=False, which writes "
            "an ONNX RNN op")


@op("Reshape")
def _reshape(ctx, node, ins, a):
    x, shape = ins[0], ints(ins[1], "Reshape shape")
    allow = bool(a.get("allowzero", 0))

    def f(d: Dyn) -> Dyn:
        try:
            return reshape(d, resolve_reshape_target(d.dims(), shape, allow))
        except (SymError, AxisError) as e:
            baked = _baked_length(ctx, node, d, shape, allow)
            if baked is not None:
                return baked
            if not isinstance(e, SymError):
                raise
        raise AxisError(f"Reshape of {d.describe()} to the fixed shape {shape}: the sizes do not "
                        "fit a variable sequence length/batch size (was the model exported with "
                        "fixed sizes baked in?)")
    return [move(x, f, reshapes=True)]


def _baked_length(ctx, node, d: Dyn, shape: list, allow: bool) -> Dyn | None:
    """A Reshape target with the sequence length written in as a number (torch's dynamo
    exporter bakes the example's length into e.g. [5, -1, 8], although the input is
    declared dynamic): if one of its numbers taken as the length T makes the reshape fit
    with the time axis exactly there, T is that number from now on for this conversion
    (the verifier then runs the source at that length only, the one onnxruntime accepts).
    The converted model keeps time symbolic and runs any length."""
    if HINTS.get("T") is not None or not d.has("T"):
        return None
    for k, n in enumerate(shape):
        if isinstance(n, Dim) or int(n) <= 1:
            continue
        target = list(shape)
        target[k] = Dim(1, 1, 0)            # the number at k read as the sequence length
        try:
            out = reshape(d, resolve_reshape_target(d.dims(), target, allow))
        except (SymError, AxisError):
            continue
        if out.axes[k] != ("T",) or sum("T" in t for t in out.axes) != 1:
            continue
        HINTS["T"] = int(n)
        where = f"node {node.name!r}" if node.name else "a Reshape node"
        ctx.warnings.append(f"{where} (Reshape) has the sequence length {int(n)} written into its "
                            f"target shape {shape} (baked in at export): taken as the time axis. "
                            f"The source runs only at {int(n)} steps; the converted model runs any "
                            "length")
        return out
    return None


@op("Flatten")
def _flatten(ctx, node, ins, a):
    axis = int(a.get("axis", 1))

    def f(d: Dyn) -> Dyn:
        dims = d.dims()
        k = norm_axis(axis, d.rank + 1) if axis < 0 else axis
        return reshape(d, [dims_product(dims[:k]), dims_product(dims[k:])])
    return [move(ins[0], f)]


@op("Transpose")
def _transpose(ctx, node, ins, a):
    perm = a.get("perm")
    return [move(ins[0], lambda d: transpose(d, perm), reshapes=True)]


@op("Squeeze")
def _squeeze(ctx, node, ins, a):
    axes = a.get("axes") if ctx.opset < 13 else (ints(ins[1], "Squeeze axes") if len(ins) > 1 and
                                                  ins[1] is not None else None)
    return [move(ins[0], lambda d: squeeze(d, axes), reshapes=True)]


@op("Unsqueeze")
def _unsqueeze(ctx, node, ins, a):
    axes = a.get("axes") if ctx.opset < 13 else ints(ins[1], "Unsqueeze axes")
    return [move(ins[0], lambda d: unsqueeze(d, axes), reshapes=True)]


@op("Identity", "Dropout")
def _identity(ctx, node, ins, a):
    if node.op_type == "Dropout" and len(ins) > 2 and ins[2] is not None:
        if is_val(ins[2]) or bool(np.asarray(ins[2]).reshape(-1)[0]):
            raise OnnxConversionError("Dropout in training mode is not supported")
    if node.op_type == "Dropout" and len(node.output) > 1 and node.output[1]:
        return [ins[0], OnnxValue(why="the mask output of Dropout is not supported")]
    return [ins[0]]


@op("Cast", "CastLike")
def _cast(ctx, node, ins, a):
    from onnx import helper
    x = ins[0]
    if node.op_type == "Cast":
        to = np.dtype(helper.tensor_dtype_to_np_dtype(int(a["to"])))
    else:
        to = np.asarray(ins[1]).dtype if not is_val(ins[1]) else np.dtype(np.float32)
    if (x.data is not None and x.data.kind == "data" and to.kind != "f"
            and not embedding.is_token_ids(ctx, x.data)):  # token ids may be cast between ints
        raise OnnxConversionError(f"Cast of a per-step value to {to} is not supported")
    return [x]


@op("Slice")
def _slice(ctx, node, ins, a):
    for k, what in ((1, "starts"), (2, "ends"), (3, "axes"), (4, "steps")):
        if ctx.opset >= 10 and len(ins) > k and is_val(ins[k]):
            raise OnnxConversionError(f"Slice {what} must be constants (they depend on the input "
                                      "data)")
    starts, ends, axes, steps = slice_args(ins, a, ctx.opset)

    def f(d: Dyn) -> Dyn:
        for s, e, ax, st in zip(starts, ends, axes, steps):
            d = slice_axis(ctx, d, norm_axis(ax, d.rank), s, e, int(st))
        return d
    return [move(ins[0], f)]


@op("Gather")
def _gather(ctx, node, ins, a):
    x, ind = ins
    if is_val(ind):  # token ids indexing a table
        return embedding.lookup(ctx, node, x, ind, int(a.get("axis", 0)))
    if is_sym_array(np.asarray(ind)):
        raise OnnxConversionError("Gather indices depend on the sequence length")
    ind = np.asarray(ind).astype(np.int64)
    axis = int(a.get("axis", 0))

    def f(d: Dyn) -> Dyn:
        ax = norm_axis(axis, d.rank)
        if d.is_feature_axis(ax):
            return take(d, ax, ind)
        if d.axes[ax] == ("T",) and ind.ndim == 0:
            t0 = HINTS.get("T")
            if int(ind) == -1 or (t0 and int(ind) == t0 - 1):
                if int(ind) != -1:
                    ctx.warnings.append(f"Gather index {int(ind)} on the time axis taken as the last "
                                        f"step (the file fixes {t0} time steps)")
                return _last_step(ctx, d, ax, False, "Gather")
        what = _axis_word(d.axes[ax])
        raise AxisError(f"Gather of index {ind.tolist()} on the {what} axis {ax} {d.describe()}: "
                        "only the last time step can be selected"
                        + (UNROLLED if what.startswith("time") else ""))
    return [move(x, f)]


@op("Concat")
def _concat(ctx, node, ins, a):
    axis = int(a["axis"])
    parts = [x for x in ins if x is not None]
    # drop empty constants (torch sometimes concatenates a (0,) tensor)
    parts = [x for x in parts if is_val(x) or np.asarray(x).size > 0]
    if len(parts) == 1:
        return [parts[0]]
    ids = None
    if all(is_val(x) and x.ids is not None for x in parts):
        try:
            ds = [x.ids for x in parts]
            ax = norm_axis(axis, ds[0].rank)
            ids = _concat_idx(ds, ax, [np.zeros(1, np.int64)] * len(ds), ds[0])
        except (AxisError, SymError):
            ids = None
    try:
        data = concat_data(ctx, node, [to_dyn(x) for x in parts], axis)
        return [OnnxValue(data, ids)]
    except (AxisError, SymError, OnnxConversionError) as e:
        return [OnnxValue(None, ids, str(e), err=e)]


def _concat_idx(ds: list[Dyn], ax: int, offsets, proto: Dyn) -> Dyn:
    for d in ds:
        if d.rank != proto.rank:
            raise AxisError("Concat of tensors of different rank")
        if not d.is_feature_axis(ax):
            raise AxisError(f"Concat along axis {ax} {d.describe()}, which holds time/batch")
        for k in range(d.rank):
            if k != ax and (d.axes[k] != proto.axes[k] or d.fshape[k] != proto.fshape[k]):
                raise AxisError(f"Concat of {d.describe()} and {proto.describe()}")
    idx = np.concatenate([np.where(d.idx >= 0, d.idx + off, -1) for d, off in zip(ds, offsets)], axis=ax)
    axes = list(proto.axes)
    axes[ax] = ("F",) if idx.shape[ax] > 1 else ()
    return proto.with_(idx, axes)


def concat_data(ctx, node, ds: list[Dyn], axis: int) -> Dyn:
    ax = norm_axis(axis, ds[0].rank)
    if all(d.kind == "const" for d in ds):
        offs, datas, total = [], [], 0
        for d in ds:
            offs.append(total)
            datas.append(d.ref)
            total += d.ref.size
        out = _concat_idx(ds, ax, offs, ds[0])
        out.ref = np.concatenate(datas)
        return out
    seq = any(d.kind == "data" and d.readout is None for d in ds)
    conv = []
    for d in ds:
        if d.kind == "const":
            m = ctx.as_data(d)
            m.readout = None if seq else np.zeros(ctx.size(m.ref), np.int64)
            conv.append(m)
        else:
            if seq and d.readout is not None:
                if np.any(d.readout != READ_ANY):
                    raise AxisError("Concat of per-step values with a final-state value")
                d = Dyn(d.kind, d.ref, d.idx, d.axes, None)
            conv.append(d)
    values: list[str] = []
    offs = []
    for d in conv:
        if d.ref not in values:
            values.append(d.ref)
    starts, total = {}, 0
    for v in values:
        starts[v] = total
        total += ctx.size(v)
    offs = [starts[d.ref] for d in conv]
    out = _concat_idx(conv, ax, offs, conv[0])
    if len(values) > 1:
        out.ref = ctx.emit("Concat", node.name or "concat", values,
                           {"sizes": [ctx.size(v) for v in values]})
    else:
        out.ref = values[0]
    if not seq:
        by_value = {d.ref: d.readout for d in conv}
        out.readout = np.concatenate([by_value[v] for v in values])
    else:
        out.readout = None
    out.kind = "data"
    return out


@op("Split")
def _split(ctx, node, ins, a):
    axis = int(a.get("axis", 0))
    n_out = len(node.output)
    if ctx.opset < 13:
        split = a.get("split")
    else:
        split = ints(ins[1], "Split sizes") if len(ins) > 1 and ins[1] is not None else None

    def sizes_for(n: int) -> list[int]:
        if split is not None:
            return [int(s) for s in split]
        k = -(-n // n_out)  # opset 18 num_outputs: ceil-sized chunks, last one smaller
        return [min(k, n - i * k) for i in range(n_out)]

    outs = []
    for i in range(n_out):
        def f(d: Dyn, i=i) -> Dyn:
            ax = norm_axis(axis, d.rank)
            if not d.is_feature_axis(ax):
                raise AxisError(f"Split along axis {ax} {d.describe()}, which holds time/batch")
            sz = sizes_for(d.fshape[ax])
            start = sum(sz[:i])
            return feature_slice(d, ax, np.arange(start, start + sz[i]))
        outs.append(move(ins[0], f))
    return outs


@op("Pad")
def _pad(ctx, node, ins, a):
    mode = a.get("mode", "constant")
    if ctx.opset < 11:
        pads, value, axes = a["pads"], float(a.get("value", 0.0)), None
    else:
        pads = ints(ins[1], "Pad pads")
        value = scalar(ins[2], "Pad value") if len(ins) > 2 and ins[2] is not None else 0.0
        axes = ints(ins[3], "Pad axes") if len(ins) > 3 and ins[3] is not None else None
    x = ins[0]

    def f(d: Dyn) -> Dyn:
        ax = list(range(d.rank)) if axes is None else [norm_axis(k, d.rank) for k in axes]
        begin, end = [0] * d.rank, [0] * d.rank
        for j, k in enumerate(ax):
            begin[k], end[k] = int(pads[j]), int(pads[j + len(ax)])
        return pad(d, begin, end, mode)
    out = move(x, f)
    if out.data is None and isinstance(x, OnnxValue) and x.data is not None:
        out.causal_pad = causal_time_pad(x.data, pads, axes, mode, value)
    if mode == "constant" and value != 0.0 and out.data is not None:
        d = out.data
        if d.kind != "data":
            raise OnnxConversionError("Pad of a constant with a non-zero value")
        m = ctx.mat(d)
        shift = np.where(d.idx.reshape(-1) < 0, value, 0.0).astype(np.float32)
        v = ctx.emit("Scale", node.name or "pad", [m.ref], {"size": int(shift.size)}, {"shift": shift})
        out = OnnxValue(Dyn("data", v, m.idx, m.axes, m.readout), None)
    return [out]
