"""Keras pooling over time: GlobalAveragePooling1D / GlobalMaxPooling1D (also their
GlobalAvgPool1D / GlobalMaxPool1D aliases), each one IR `TimeReduce`: a running mean/max
over the steps so far, so the last-step value streams with prefix semantics (DESIGN.md)."""
from __future__ import annotations

from ..context import Context, Layer
from ..values import KValue
from .registry import layer


def _pool(ctx: Context, L: Layer, ins: list, kind: str) -> KValue:
    v = ins[0]
    if not v.time:
        ctx.fail("pooling over time of a tensor without a time axis")
    if L.get("data_format", "channels_last") != "channels_last":
        ctx.fail(f"data_format={L.get('data_format')!r} pools over the features, not over time "
                 "(only channels_last, the default)")
    if L.get("keepdims"):
        ctx.fail("keepdims=True (a size-1 time axis) is not supported")
    if len(v.shape) != 1:
        ctx.fail(f"pooling over time of frames of shape {v.shape} (one feature axis expected)")
    vid = ctx.emit("TimeReduce", [v.vid], {"kind": kind, "size": v.size})
    return KValue(vid, v.shape, time=False, prefix_ok=v.prefix_ok)


@layer("GlobalAveragePooling1D", "GlobalAvgPool1D")
def _global_average(ctx: Context, L: Layer, ins: list, per_frame: bool):
    return _pool(ctx, L, ins, "mean")


@layer("GlobalMaxPooling1D", "GlobalMaxPool1D")
def _global_max(ctx: Context, L: Layer, ins: list, per_frame: bool):
    return _pool(ctx, L, ins, "max")
