"""Shape bookkeeping on per-step values: squeeze/unsqueeze, transpose/permute, expand,
view/reshape/flatten and slice. They only move the role of each torch dimension (time,
batch, features) around and emit nothing, except a feature slice (an exact 0/1 `Linear`);
`[:, -1:]` on the time axis selects the last step."""
from __future__ import annotations

import numpy as np

from ..context import Context
from ..fx import fx_shape
from ..values import StateStack, TorchValue
from .registry import op


def squeeze_dim(ctx: Context, v: TorchValue, d: int) -> TorchValue:
    """v without its size-1 dimension d (a size-1 time axis: the sequence's only step)."""
    r = ctx.res(v.dims[d])
    dims = v.dims[:d] + v.dims[d + 1:]
    shape = v.shape[:d] + v.shape[d + 1:]
    t = v.t
    if r == "T":
        t = (ctx.T or 1) - 1  # a single-step sequence: its only step is the last one
    return TorchValue(v.vid, v.size, dims, shape, t)


def _squeeze(ctx: Context, v, dims_to_drop):
    if isinstance(v, StateStack):
        for d in sorted(dims_to_drop, reverse=True):
            if d == 0:  # the layer axis comes last in this descending loop
                if len(v.entries) != 1:
                    ctx.fail("squeeze of the layer axis of h_n with several layers")
                return ctx.select_state(v, 0)
            else:
                v = StateStack(v.kind, v.entries, v.dims[:d] + v.dims[d + 1:],
                               v.shape[:d] + v.shape[d + 1:], v.module)
        return v
    v = ctx.val(v, "squeeze")
    for d in sorted(dims_to_drop, reverse=True):
        if v.shape[d] != 1:
            continue
        v = squeeze_dim(ctx, v, d)
    return v


@op("squeeze")
def _squeeze_op(ctx: Context, tgt, a):
    v = a["self"]
    shp = v.shape
    if "dim" in a and a["dim"] is not None:
        ds = a["dim"] if isinstance(a["dim"], (list, tuple)) else [a["dim"]]
    elif "dims" in a and a["dims"] is not None:
        ds = a["dims"]
    else:
        ds = [i for i, s in enumerate(shp) if s == 1]
    ds = [d % len(shp) for d in ds if shp[d % len(shp)] == 1]
    return _squeeze(ctx, v, ds)


@op("unsqueeze")
def _unsqueeze(ctx: Context, tgt, a):
    v = ctx.val(a["self"], "unsqueeze")
    d = a["dim"] % (len(v.shape) + 1)
    return TorchValue(v.vid, v.size, v.dims[:d] + (ctx.fresh(),) + v.dims[d:],
                      v.shape[:d] + (1,) + v.shape[d:], v.t)


def _permute(ctx: Context, v, perm):
    if isinstance(v, StateStack):
        ctx.fail("reordering the axes of h_n/c_n is not supported (index it: h_n[-1])")
    v = ctx.val(v, "permute")
    return TorchValue(v.vid, v.size, tuple(v.dims[p] for p in perm), tuple(v.shape[p] for p in perm),
                      v.t)


@op("transpose")
def _transpose(ctx: Context, tgt, a):
    v = a["self"]
    n = len(v.shape)
    d0, d1 = a["dim0"] % n, a["dim1"] % n
    perm = list(range(n))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return _permute(ctx, v, perm)


@op("permute")
def _permute_op(ctx: Context, tgt, a):
    v = a["self"]
    return _permute(ctx, v, [d % len(v.shape) for d in a["dims"]])


@op("t")
def _t(ctx: Context, tgt, a):
    v = a["self"]
    return _permute(ctx, v, [1, 0] if len(v.shape) == 2 else [0])


@op("expand")
def _expand(ctx: Context, tgt, a):
    v = ctx.val(a["self"], "expand")
    if fx_shape(ctx.cur) != v.shape:
        ctx.fail(f"expand from {v.shape} to {fx_shape(ctx.cur)} (broadcasting a per-step value)")
    return v


def _reshape(ctx: Context, v, new_shape):
    if isinstance(v, StateStack) and len(v.entries) == 1:
        v = ctx.select_state(v, 0)
        if isinstance(v, StateStack):
            ctx.fail("reshape of h_n")
    v = ctx.val(v, "reshape")
    new_shape = tuple(new_shape)
    heads = _heads_reshape(ctx, v, new_shape)
    if heads is not None:
        return heads
    old = [(d, s) for d, s in zip(v.dims, v.shape) if s != 1]
    new_big = [s for s in new_shape if s != 1]
    if [s for _, s in old] != new_big:
        ctx.fail(f"reshape from {v.shape} to {new_shape} merges or splits axes (only adding "
                 "or removing size-1 axes is supported)")
    # Dropping size-1 axes that carry a role: time (a one-step sequence) or features.
    t = v.t
    for d, s in zip(v.dims, v.shape):
        if s == 1 and ctx.res(d) == "T":
            t = (ctx.T or 1) - 1
    it = iter(d for d, _ in old)
    ones = [d for d, s in zip(v.dims, v.shape) if s == 1 and ctx.res(d) != "T"]
    n_new_ones = sum(1 for s in new_shape if s == 1)
    reuse = iter(ones) if len(ones) == n_new_ones else None
    dims = []
    for s in new_shape:
        if s != 1:
            dims.append(next(it))
        else:
            dims.append(next(reuse) if reuse is not None else ctx.fresh())
    return TorchValue(v.vid, v.size, tuple(dims), new_shape, t)


def _heads_reshape(ctx: Context, v: TorchValue, new_shape: tuple) -> TorchValue | None:
    """The features split into attention heads, (..., E) -> (..., H, D) (the new axis has
    role 'H', the features keep theirs with size D), or merged back (..., H, D) -> (..., E);
    None for any other reshape. Only scaled_dot_product_attention reads a split value: every
    per-step op needs its features last and whole (need_last_feature)."""
    n = len(v.shape)
    if (len(new_shape) == n + 1 and new_shape[:-2] == v.shape[:-1] and v.shape[-1] == v.size
            and new_shape[-2] > 1 and new_shape[-1] > 1
            and new_shape[-2] * new_shape[-1] == v.size and ctx.res(v.dims[-1]) not in ("T", "B")):
        ctx.bind(v.dims[-1], "F")
        h = ctx.fresh("h")
        ctx.bind(h, "H")
        return TorchValue(v.vid, v.size, v.dims[:-1] + (h, v.dims[-1]), new_shape, v.t)
    if (n >= 2 and len(new_shape) == n - 1 and ctx.res(v.dims[-2]) == "H"
            and ctx.res(v.dims[-1]) == "F" and new_shape == v.shape[:-2] + (v.size,)):
        return TorchValue(v.vid, v.size, v.dims[:-2] + (v.dims[-1],), new_shape, v.t)
    return None


def _feature_parts(ctx: Context, v, sizes: list[int], what: str) -> list[TorchValue]:
    """Consecutive feature slices of v (exact 0/1 Linear nodes), e.g. q, k, v of a fused
    in-projection."""
    v = ctx.val(v, what)
    ctx.need_last_feature(v, what)
    out, start = [], 0
    for n in sizes:
        W = np.zeros((v.size, n), np.float32)
        W[np.arange(start, start + n), np.arange(n)] = 1.0
        part = ctx.linear(v, W, None, ctx.node_name(f".{what}{len(out)}"))
        out.append(TorchValue(part.vid, n, v.dims, v.shape[:-1] + (n,), v.t))
        start += n
    return out


def _split_dim(ctx: Context, v, dim: int, what: str) -> None:
    if dim % len(v.shape) != len(v.shape) - 1:
        ctx.fail(f"{what} along axis {dim} of shape {v.shape} (only the features, the last axis)")


@op("split", "split_with_sizes")
def _split(ctx: Context, tgt, a):
    v = a["self"]
    _split_dim(ctx, v, a.get("dim", 0), "split")
    F = v.shape[-1]
    n = a.get("split_size", a.get("split_sizes"))
    sizes = list(n) if isinstance(n, (list, tuple)) else [min(n, F - i) for i in range(0, F, n)]
    return _feature_parts(ctx, v, sizes, "split")


@op("chunk")
def _chunk(ctx: Context, tgt, a):
    v = a["self"]
    _split_dim(ctx, v, a.get("dim", 0), "chunk")
    F = v.shape[-1]
    step = -(-F // a["chunks"])
    return _feature_parts(ctx, v, [min(step, F - i) for i in range(0, F, step)], "chunk")


@op("view", "reshape", "_unsafe_view", "flatten")
def _view(ctx: Context, tgt, a):
    return _reshape(ctx, a["self"], fx_shape(ctx.cur))


@op("slice")
def _slice(ctx: Context, tgt, a):
    v = ctx.val(a["self"], "slice")
    n = len(v.shape)
    d = a["dim"] % n
    L = v.shape[d]
    start = 0 if a.get("start") is None else a["start"]
    end = L if a.get("end") is None else a["end"]
    step = a.get("step", 1) or 1
    rng = range(L)[slice(start, end, step)]
    if len(rng) == L:
        return v
    r = ctx.res(v.dims[d])
    if r == "T" or (r.startswith("?") and v.t is None and ctx.roles(v).count("T") == 0
                    and L > 1 and r in {ctx.res(x) for x in ctx.input_val.dims}):
        if len(rng) == 1 and rng[0] == L - 1 and v.t is None:
            ctx.bind(v.dims[d], "T")
            ctx.set_T(L)
            return TorchValue(v.vid, v.size, v.dims[:d] + (ctx.fresh(),) + v.dims[d + 1:],
                              v.shape[:d] + (1,) + v.shape[d + 1:], L - 1)
        ctx.fail(f"slicing time steps {rng.start}:{rng.stop}:{rng.step} (only the last step "
                 "[-1:] is supported)")
    if r == "B":
        ctx.fail("slicing the batch axis is not supported")
    if d != n - 1:
        ctx.fail(f"slicing axis {d} of shape {v.shape}")
    ctx.need_last_feature(v, "feature slice")
    # A feature slice is an exact selection matrix: W[i, j] = 1 where i = rng[j].
    W = np.zeros((L, len(rng)), np.float32)
    W[list(rng), np.arange(len(rng))] = 1.0
    return ctx.linear(v, W, None, ctx.node_name())
