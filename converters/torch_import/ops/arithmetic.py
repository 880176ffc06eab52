"""Element-wise arithmetic: + - * / between two per-step values or with a constant,
rsub and neg."""
from __future__ import annotations

import numpy as np

from ..context import Context
from ..fx import fx_shape
from ..values import TorchValue
from .registry import op
from .time_pool import SOFTMAX, pending, weight_sequence


def _binary(ctx: Context, tgt, a, kind: str):
    """x (+ - * /) y: between two per-step values an `Add`/`Mul` node, with a constant an
    exact affine map (`Context.affine`)."""
    x = a.get("self", a.get("input"))
    y = a.get("other")
    alpha = a.get("alpha", 1)
    alpha = 1 if alpha is None else alpha
    name = ctx.node_name()
    if pending(x) or pending(y):
        w, h = (x, y) if pending(x) else (y, x)
        if kind != "mul" or not isinstance(h, TorchValue) or pending(h) or not w.vid.startswith(SOFTMAX):
            ctx.fail(f"{kind} with softmax weights over time: attention pooling is "
                     "(softmax(score, dim=time) * h).sum(time)")
        return weight_sequence(ctx, w, h)
    if isinstance(x, TorchValue) and isinstance(y, TorchValue):
        ctx.same_layout(x, y, kind)
        if kind == "div":
            ctx.fail("division of two per-step values is not supported")
        if kind in ("add", "sub"):
            s = alpha if kind == "add" else -alpha
            if s != 1:
                y = ctx.affine(y, s, None, name + ".scale")
            vid = ctx.emit("Add", name, [x.vid, y.vid], {"size": x.size}, {}, x.size)
        else:
            vid = ctx.emit("Mul", name, [x.vid, y.vid], {"size": x.size}, {}, x.size)
        return TorchValue(vid, x.size, x.dims, fx_shape(ctx.cur), x.t)
    if isinstance(y, TorchValue) and not isinstance(x, TorchValue):
        c = ctx.const_vector(x, y, kind)
        if kind == "add":
            return ctx.affine(y, alpha, c, name)
        if kind == "sub":  # c - alpha*y
            return ctx.affine(y, -float(alpha), c, name)
        if kind == "mul":
            return ctx.affine(y, c, None, name)
        ctx.fail("dividing a constant by a per-step value is not supported")
    x = ctx.val(x, kind)
    c = ctx.const_vector(y, x, kind)
    if kind == "add":
        return ctx.affine(x, 1.0, c * alpha, name)
    if kind == "sub":
        return ctx.affine(x, 1.0, -c * alpha, name)
    if kind == "mul":
        return ctx.affine(x, c, None, name)
    if kind == "div":
        mode = a.get("rounding_mode")
        if mode is not None:
            ctx.fail(f"division with rounding_mode={mode!r}")
        return ctx.affine(x, 1.0 / c.astype(np.float64), None, name)
    ctx.fail(kind)


@op("add")
def _add(ctx: Context, tgt, a):
    return _binary(ctx, tgt, a, "add")


@op("sub")
def _sub(ctx: Context, tgt, a):
    return _binary(ctx, tgt, a, "sub")


@op("mul")
def _mul(ctx: Context, tgt, a):
    return _binary(ctx, tgt, a, "mul")


@op("div")
def _div(ctx: Context, tgt, a):
    return _binary(ctx, tgt, a, "div")


@op("rsub")
def _rsub(ctx: Context, tgt, a):  # other - alpha*self
    x = ctx.val(a["self"], "rsub")
    c = ctx.const_vector(a["other"], x, "rsub")
    return ctx.affine(x, -float(a.get("alpha", 1) or 1), c, ctx.node_name())


@op("neg")
def _neg(ctx: Context, tgt, a):
    return ctx.affine(ctx.val(a["self"], "neg"), -1.0, None, ctx.node_name())
