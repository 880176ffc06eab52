"""Ops on the time axis: selecting one step (x[:, t], unbind, h_n[k] of a recurrent
layer), gathering the steps of a cell loop back into a sequence (torch.stack / torch.cat
over time), and torch.cat on the feature axis (an IR `Concat`)."""
from __future__ import annotations

from ..context import Context
from ..fx import fx_shape
from ..values import StateStack, TorchValue
from .registry import op
from .shape import squeeze_dim


def _time_axis(ctx: Context, v: TorchValue, d: int, what: str) -> bool:
    """Is axis d of v the time axis? Binds it to time when it can only be time."""
    r = ctx.res(v.dims[d])
    if r == "T":
        return True
    if r in ("B", "F"):
        return False
    if v.t is not None or "T" in ctx.roles(v):
        return False
    if v.shape[d] == 1 and not r.startswith("?s"):
        return False  # a size-1 axis made by unsqueeze; an input axis of size 1 is time (T=1)
    ctx.bind(v.dims[d], "T")  # selecting along a batch axis is unsupported anyway
    ctx.set_T(v.shape[d])
    ctx.check_dims(v)
    return True


@op("select")
def _select(ctx: Context, tgt, a):
    v, d, i = a["self"], a["dim"], a["index"]
    if isinstance(v, StateStack):
        if d % len(v.shape) != 0:
            ctx.fail("h_n/c_n can only be indexed by layer (h_n[k])")
        return ctx.select_state(v, i)
    v = ctx.val(v, "select")
    d %= len(v.shape)
    L = v.shape[d]
    if _time_axis(ctx, v, d, "select"):
        return TorchValue(v.vid, v.size, v.dims[:d] + v.dims[d + 1:], v.shape[:d] + v.shape[d + 1:],
                          i % L)
    r = ctx.res(v.dims[d])
    if L == 1:
        return squeeze_dim(ctx, v, d)
    what = {"B": "one batch element", "F": "one feature"}.get(r, f"index {i} of axis {d}")
    ctx.fail(f"selecting {what} is not supported")


@op("unbind")
def _unbind(ctx: Context, tgt, a):
    v, d = a["self"], a["dim"]
    if isinstance(v, StateStack):
        return [ctx.select_state(v, i) for i in range(len(v.entries))]
    v = ctx.val(v, "unbind")
    d %= len(v.shape)
    if not _time_axis(ctx, v, d, "unbind"):
        ctx.fail("unbind along a non-time axis is not supported")
    return [TorchValue(v.vid, v.size, v.dims[:d] + v.dims[d + 1:], v.shape[:d] + v.shape[d + 1:], i)
            for i in range(v.shape[d])]


def _gather_time(ctx: Context, vals: list[TorchValue], what: str) -> TorchValue:
    """A list of single-step values of one per-step value, in time order: the sequence."""
    v0 = vals[0]
    if any(v.t is None for v in vals):
        ctx.fail(f"{what} over time of whole sequences")
    if any(v.vid != v0.vid for v in vals):
        ctx.fail(f"{what} over time of values computed differently at different steps")
    ts = [v.t for v in vals]
    T = ctx.T or len(vals)
    if ts != list(range(T)):
        ctx.fail(f"{what} over time steps {ts}; lstm-infer needs all {T} steps in order")
    return v0


@op("stack")
def _stack(ctx: Context, tgt, a):
    vals = [ctx.val(v, "stack") for v in a["tensors"]]
    v0 = _gather_time(ctx, vals, "stack")
    for v in vals[1:]:
        for x, y in zip(v.dims, v0.dims):
            ctx.bind(x, y)
    d = a["dim"] % (len(v0.shape) + 1)
    tsym = ctx.fresh("t")
    ctx.bind(tsym, "T")
    return TorchValue(v0.vid, v0.size, v0.dims[:d] + (tsym,) + v0.dims[d:], fx_shape(ctx.cur), None)


@op("cat", "concat", "concatenate")
def _cat(ctx: Context, tgt, a):
    vals = [ctx.val(v, "cat") for v in a["tensors"]]
    if len(vals) == 1:
        return vals[0]
    v0 = vals[0]
    d = a["dim"] % len(v0.shape)
    r = ctx.res(v0.dims[d])
    if r in ("T",) or (r.startswith("?") and all(v.shape[d] == 1 and v.t is not None for v in vals)):
        v = _gather_time(ctx, vals, "cat")
        ctx.bind(v0.dims[d], "T")
        return TorchValue(v.vid, v.size, v.dims, fx_shape(ctx.cur), None)
    if r == "B":
        ctx.fail("concatenation along the batch axis is not supported")
    if d != len(v0.shape) - 1:
        ctx.fail(f"concatenation along axis {d} of shape {v0.shape} (only the feature axis)")
    for v in vals:
        ctx.need_last_feature(v, "cat")
        if v.t != v0.t or v.shape[:-1] != v0.shape[:-1]:
            ctx.same_layout(v, TorchValue(v.vid, v.size, v0.dims[:-1] + v.dims[-1:],
                                          v0.shape[:-1] + v.shape[-1:], v0.t), "cat")
        for x, y in zip(v.dims[:-1], v0.dims[:-1]):
            ctx.bind(x, y)
    sizes = [v.size for v in vals]
    vid = ctx.emit("Concat", ctx.node_name(), [v.vid for v in vals], {"sizes": sizes}, {},
                   sum(sizes))
    return TorchValue(vid, sum(sizes), v0.dims, fx_shape(ctx.cur), v0.t)
