"""nn.LayerNorm over the last (feature) dimension."""
from __future__ import annotations

from ..context import Context
from ..fx import is_tensor, to_numpy
from .registry import op


@op("layer_norm")
def _layer_norm(ctx: Context, tgt, a):
    x = ctx.val(a["input"], "layer_norm")
    shape = list(a["normalized_shape"])
    if len(shape) != 1:
        ctx.fail(f"layer_norm over {shape}: only the last dim is supported")
    ctx.need_last_feature(x, "layer_norm")
    if shape[0] != x.size:
        ctx.fail(f"layer_norm over {shape[0]} features of a {x.size}-feature value")
    w, b = a["weight"], a["bias"]
    for t in (w, b):
        if t is not None and not is_tensor(t):
            ctx.fail("layer_norm with weights computed from the input")
    vid = ctx.emit("LayerNorm", ctx.node_name(), [x.vid], {"size": x.size, "eps": float(a["eps"])},
                   {"weight": None if w is None else to_numpy(w),
                    "bias": None if b is None else to_numpy(b)}, x.size)
    return ctx.derive(x, vid)


@op("native_layer_norm")
def _native_layer_norm(ctx: Context, tgt, a):
    y = _layer_norm(ctx, tgt, a)
    return (y, None, None)
