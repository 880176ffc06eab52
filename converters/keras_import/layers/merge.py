"""Keras merge layers on per-step values: Concatenate (last axis) and the element-wise
Add, Subtract, Multiply, Average, Maximum, Minimum (IR Binary, same shapes only)."""
from __future__ import annotations

from ..context import Context, Layer
from ..values import KValue
from .registry import layer

_KINDS = {"Add": "add", "Subtract": "sub", "Multiply": "mul", "Maximum": "max",
          "Minimum": "min", "Average": "add"}


def _check_time(ctx: Context, ins: list) -> None:
    if len({v.time for v in ins}) > 1:
        ctx.fail("merging a tensor with a time axis and one without")


@layer("Concatenate")
def _concatenate(ctx: Context, L: Layer, ins: list, per_frame: bool):
    _check_time(ctx, ins)
    v0 = ins[0]
    rank = 1 + (1 if v0.time and not per_frame else 0) + len(v0.shape)
    axis = int(L.get("axis", -1))
    if axis not in (-1, rank - 1):
        ctx.fail(f"Concatenate on axis {axis}: only the last axis is supported")
    if any(len(v.shape) != 1 for v in ins):
        ctx.fail("Concatenate of multi-dimensional per-step tensors is not supported")
    sizes = [v.size for v in ins]
    vid = ctx.emit("Concat", [v.vid for v in ins], {"sizes": sizes})
    return KValue(vid, (sum(sizes),), v0.time, all(v.prefix_ok for v in ins))


@layer(*_KINDS)
def _elementwise(ctx: Context, L: Layer, ins: list, per_frame: bool):
    _check_time(ctx, ins)
    kind = _KINDS[L.class_name]
    out = ins[0]
    for k, v in enumerate(ins[1:]):
        if v.shape != out.shape:
            ctx.fail(f"{L.class_name} of per-step shapes {out.shape} and {v.shape} "
                     "(broadcasting is not supported)")
        out = ctx.binary(kind, out, v, suffix=f".{k}" if len(ins) > 2 else "")
    if L.class_name == "Average":
        out = ctx.act(out, "affine", 1.0 / len(ins), 0.0, suffix=".ave")
    return out
