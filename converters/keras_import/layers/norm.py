"""Keras normalisation layers: LayerNormalization (an IR LayerNorm over the last
per-step axes) and BatchNormalization (inference: its moving statistics folded into one
per-feature scale and shift, an IR Scale)."""
from __future__ import annotations

from math import prod

import numpy as np

from ..context import Context, Layer
from ..values import KValue
from .registry import layer


def _per_step_axes(ctx: Context, v: KValue, axis, per_frame: bool) -> list[int]:
    """Keras axes (counting batch and time) -> per-step axes, sorted."""
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    lead = 1 + (1 if v.time and not per_frame else 0)   # batch (and time)
    rank = lead + len(v.shape)
    out = []
    for a in axes:
        a = int(a) + rank if int(a) < 0 else int(a)
        if not lead <= a < rank:
            ctx.fail(f"axis {axis} includes the batch or time axis; only feature axes are "
                     "supported")
        out.append(a - lead)
    return sorted(out)


@layer("LayerNormalization")
def _layer_norm(ctx: Context, L: Layer, ins: list, per_frame: bool):
    """(x - mean) / sqrt(var + epsilon) * gamma + beta over the trailing per-step axes
    `axis` (biased variance, as Keras): rows = the product of the other per-step axes."""
    v = ins[0]
    if L.get("rms_scaling"):
        ctx.fail("rms_scaling=True is not supported")
    axes = _per_step_axes(ctx, v, L.get("axis", -1), per_frame)
    n = len(v.shape)
    if axes != list(range(n - len(axes), n)):
        ctx.fail(f"normalising over axis {L.get('axis')}: only the trailing feature axes")
    size = prod(v.shape[n - len(axes):])
    center, scale = bool(L.get("center", True)), bool(L.get("scale", True))
    ws = ctx.weights(L, int(center) + int(scale))
    gamma = ws[0].reshape(-1) if scale else None
    beta = ws[int(scale)].reshape(-1) if center else None
    attrs = {"size": size, "eps": float(L.get("epsilon", 1e-3))}
    if v.size // size > 1:
        attrs["rows"] = v.size // size
    vid = ctx.emit("LayerNorm", [v.vid], attrs, {"weight": gamma, "bias": beta})
    return v.derive(vid)


@layer("BatchNormalization")
def _batch_norm(ctx: Context, L: Layer, ins: list, per_frame: bool):
    """Inference: y = (x - moving_mean) / sqrt(moving_variance + epsilon) * gamma + beta
    = x * scale + shift, folded in float64, repeated over the other per-step axes."""
    v = ins[0]
    axes = _per_step_axes(ctx, v, L.get("axis", -1), per_frame)
    if len(axes) != 1:
        ctx.fail(f"BatchNormalization over axes {L.get('axis')}: one feature axis only")
    center, scale = bool(L.get("center", True)), bool(L.get("scale", True))
    ws = ctx.weights(L, int(center) + int(scale) + 2)
    gamma = ws[0] if scale else 1.0
    beta = ws[int(scale)] if center else 0.0
    mean, var = ws[-2], ws[-1]
    s = gamma / np.sqrt(var + float(L.get("epsilon", 1e-3)))
    t = beta - mean * s
    ax = axes[0]
    inner = prod(v.shape[ax + 1:])
    outer = prod(v.shape[:ax])
    s = np.tile(np.repeat(s, inner), outer)
    t = np.tile(np.repeat(t, inner), outer)
    return ctx.scale(v, s, t)
