"""Ops that pass a per-step value through unchanged at inference: dropout, copies and
aliases, and dtype conversions to float32 (anything else is rejected: only float32 runs;
integer casts of the token-id input are bookkeeping, see embedding.py)."""
from __future__ import annotations

from ..context import Context
from ..fx import packet_name, torch_module
from .embedding import int_cast
from .registry import op


@op("dropout", "feature_dropout", "alpha_dropout", "feature_alpha_dropout")
def _dropout(ctx: Context, tgt, a):
    if a.get("train"):
        ctx.warnings.append(f"dropout at {ctx.where()} was exported in training mode; "
                            "ignored (inference)")
    return ctx.val(a["input"], "dropout")


@op("native_dropout")
def _native_dropout(ctx: Context, tgt, a):
    return (ctx.val(a["input"], "dropout"), None)


@op("clone", "contiguous", "alias", "detach", "lift_fresh_copy")
def _identity(ctx: Context, tgt, a):
    first = next(iter(a.values()))
    return ctx.val(first, packet_name(tgt))


@op("_to_copy", "to")
def _to(ctx: Context, tgt, a):
    dtype = a.get("dtype")
    if dtype is not None and dtype != torch_module().float32:
        return int_cast(ctx, a["self"], dtype)  # token ids: .long(); anything else: an error
    return ctx.val(a["self"], "to")
