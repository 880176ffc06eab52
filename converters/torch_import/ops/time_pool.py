"""Reductions over time and attention pooling, which stream with running accumulators
(runtime ops TimeReduce and AttentionPool, prefix semantics: the value at step t is the
result for the sequence ended at t, like `x[:, -1]`):

- `x.mean(1)`, `x.sum(1)`, `x.amax(1)`, `x.max(1).values`, `amin`/`min` over the time axis;
  the same over the feature axis is a per-step IR `Reduce`;
- `a = softmax(score, dim=time)` is held back (a value id starting with `~`, which no IR
  node may read: `Context.emit` refuses it) until `(a * h).sum(time)` or
  `a.transpose(1, 2) @ h` / `bmm` turns it into one AttentionPool(score, h).
"""
from __future__ import annotations

from ..context import Context
from ..fx import fx_shape
from ..values import TorchValue
from .registry import op
from .time import _time_axis

SOFTMAX = "~softmax_time:"    # + score vid: softmax over time of a score per step
WEIGHTED = "~weighted:"       # + score vid + "|" + value vid: that softmax times a sequence


def pending(v) -> bool:
    return isinstance(v, TorchValue) and v.vid.startswith("~")


def _dims_arg(a, n: int) -> list[int]:
    d = a.get("dim")
    if d is None:
        return list(range(n))
    return sorted({x % n for x in (d if isinstance(d, (list, tuple)) else [d])})


def _drop(ctx: Context, v: TorchValue, d: int, keepdim: bool, vid: str, size: int, t) -> TorchValue:
    if keepdim:
        dims, shape = v.dims[:d] + (ctx.fresh(),) + v.dims[d + 1:], v.shape[:d] + (1,) + v.shape[d + 1:]
    else:
        dims, shape = v.dims[:d] + v.dims[d + 1:], v.shape[:d] + v.shape[d + 1:]
    return TorchValue(vid, size, dims, shape, t)


def _reduce(ctx: Context, a, kind: str):
    v = a["self"]
    if pending(v):
        if v.vid.startswith(WEIGHTED) and kind == "sum":
            return _weighted_sum(ctx, v, a)
        ctx.fail(f"{kind} of softmax weights over time: attention pooling is "
                 "(softmax(score, dim=time) * h).sum(time)")
    v = ctx.val(v, kind)
    n = len(v.shape)
    ds = _dims_arg(a, n)
    if a.get("dtype") is not None:
        ctx.fail(f"{kind} with dtype {a['dtype']}")
    keep = bool(a.get("keepdim", False))
    if len(ds) != 1:
        ctx.fail(f"{kind} over several axes {ds} of shape {v.shape} (one axis: time or features)")
    d = ds[0]
    if v.t is None and _time_axis(ctx, v, d, kind):
        ctx.need_last_feature(v, f"{kind} over time")
        vid = ctx.emit("TimeReduce", ctx.node_name(), [v.vid], {"kind": kind, "size": v.size}, {},
                       v.size)
        return _drop(ctx, v, d, keep, vid, v.size, (ctx.T or 1) - 1)
    if d == n - 1:
        ctx.need_last_feature(v, kind)
        vid = ctx.emit("Reduce", ctx.node_name(), [v.vid],
                       {"kind": kind, "outer": 1, "axis": v.size, "inner": 1}, {}, 1)
        return _drop(ctx, v, d, keep, vid, 1, v.t)
    ctx.fail(f"{kind} over axis {d} of shape {v.shape} (only over time or the features)")


@op("mean")
def _mean(ctx: Context, tgt, a):
    return _reduce(ctx, a, "mean")


@op("sum")
def _sum(ctx: Context, tgt, a):
    return _reduce(ctx, a, "sum")


@op("amax")
def _amax(ctx: Context, tgt, a):
    return _reduce(ctx, a, "max")


@op("amin")
def _amin(ctx: Context, tgt, a):
    return _reduce(ctx, a, "min")


@op("max", "min")
def _max_dim(ctx: Context, tgt, a):
    """torch.max(x, dim) -> (values, indices): the values only (the argmax over time is not
    a running quantity we keep)."""
    kind = tgt.__name__.split(".")[0]
    if tgt._overloadname != "dim":
        ctx.fail(f"{kind} ({tgt._overloadname}) of per-step values (supported: {kind} over one "
                 "dim, i.e. time or the features)")
    vals = _reduce(ctx, a, kind)
    return (vals, _NoIndices(kind))


class _NoIndices:
    """The indices output of max/min over a dim: reading it is refused by the walk."""

    def __init__(self, kind: str):
        self.kind = kind


def softmax_over_time(ctx: Context, x: TorchValue, d: int) -> TorchValue | None:
    """softmax(x, dim=d) when d is x's time axis: the held-back weights (None otherwise)."""
    if x.t is not None or not _time_axis(ctx, x, d, "softmax"):
        return None
    if x.size != 1:
        ctx.fail(f"softmax over time of {x.size} scores per step (attention pooling takes one "
                 "score per step)")
    return TorchValue(SOFTMAX + x.vid, 1, x.dims, fx_shape(ctx.cur), None)


def weight_sequence(ctx: Context, w: TorchValue, h: TorchValue) -> TorchValue:
    """softmax weights over time * a sequence h (broadcast over h's features)."""
    if h.t is not None:
        ctx.fail("softmax weights over time times the value of a single time step")
    shape = fx_shape(ctx.cur)
    if shape != h.shape:
        ctx.fail(f"softmax weights {w.shape} times a sequence {h.shape}: expected the weights "
                 "to broadcast over the sequence's features")
    for dw, dh, sw in zip(reversed(w.dims), reversed(h.dims), reversed(w.shape)):
        if sw != 1:
            ctx.bind(dw, dh)
    return TorchValue(f"{WEIGHTED}{w.vid[len(SOFTMAX):]}|{h.vid}", h.size, h.dims, shape, None)


def _weighted_sum(ctx: Context, v: TorchValue, a) -> TorchValue:
    ds = _dims_arg(a, len(v.shape))
    if len(ds) != 1 or ctx.res(v.dims[ds[0]]) != "T":
        ctx.fail("softmax-weighted sequence summed over an axis other than time")
    score, value = v.vid[len(WEIGHTED):].split("|")
    vid = pool(ctx, score, value, v.size)
    return _drop(ctx, v, ds[0], bool(a.get("keepdim", False)), vid, v.size, (ctx.T or 1) - 1)


def pool(ctx: Context, score: str, value: str, size: int) -> str:
    return ctx.emit("AttentionPool", ctx.node_name(), [score, value], {"size": size}, {}, size)


def weights_matmul(ctx: Context, w: TorchValue, h: TorchValue) -> TorchValue:
    """a^T @ h with a (B, 1, T) the softmax weights and h (B, T, F): AttentionPool."""
    h = ctx.val(h, "matmul")
    if len(w.shape) != len(h.shape) or w.shape[-2] != 1 or ctx.res(w.dims[-1]) != "T" \
            or ctx.res(h.dims[-2]) != "T" or h.t is not None:
        ctx.fail(f"matmul of softmax weights {w.shape} with {h.shape}: expected "
                 "(B, 1, T) @ (B, T, F)")
    ctx.need_last_feature(h, "attention pooling")
    for x, y in zip(w.dims[:-2], h.dims[:-2]):
        ctx.bind(x, y)
    vid = pool(ctx, w.vid[len(SOFTMAX):], h.vid, h.size)
    return TorchValue(vid, h.size, w.dims[:-1] + h.dims[-1:], fx_shape(ctx.cur), (ctx.T or 1) - 1)


@op("bmm")
def _bmm(ctx: Context, tgt, a):
    w = a["self"]
    if not (pending(w) and w.vid.startswith(SOFTMAX)):
        ctx.fail("bmm is supported only as softmax weights over time @ a sequence")
    return weights_matmul(ctx, w, a["mat2"])
