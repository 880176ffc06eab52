"""Keras core layers: Dense, Embedding, the per-step reshapes (Flatten, Reshape) and the
layers that do nothing at inference (Dropout and friends, Masking on unmasked data)."""
from __future__ import annotations

from math import prod

import numpy as np

from ..context import Context, Layer
from ..values import KValue
from .activations import emit_activation
from .registry import layer

# Identity at inference: noise and dropout layers are only active in training.
PASS_THROUGH = ("Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
                "ActivityRegularization", "Identity")


@layer(*PASS_THROUGH)
def _identity(ctx: Context, L: Layer, ins: list, per_frame: bool):
    return ins[0]


@layer("Masking")
def _masking(ctx: Context, L: Layer, ins: list, per_frame: bool):
    ctx.warn(f"Masking(mask_value={L.get('mask_value', 0.0)}) is converted as a no-op: steps "
             "whose features all equal the mask value are NOT skipped by lstm-infer (the "
             "results agree on data without masked steps)")
    return ins[0]


@layer("Dense")
def _dense(ctx: Context, L: Layer, ins: list, per_frame: bool):
    """y = x kernel + bias on the last axis. Keras's kernel (I, O) is the IR's W (in, out):
    no transpose. On per-step tensors (..., I) every leading position uses the same
    kernel: a grouped Linear with the kernel repeated per group (column blocks)."""
    v = ins[0]
    if not v.shape:
        ctx.fail("Dense on a tensor without a feature axis")
    use_bias = bool(L.get("use_bias", True))
    if L.get("lora_rank") and len(L.weights) != 1 + use_bias:
        # .keras files store the kernel with LoRA merged; legacy .h5 keeps the factors
        ctx.fail("LoRA factors stored apart from the kernel (lora_rank in a .h5 file); save "
                 "the model as .keras, which merges them into the kernel")
    ws = ctx.weights(L, 2 if use_bias else 1)
    kernel, bias = ws[0], (ws[1] if use_bias else None)
    I, O = kernel.shape
    if I != v.shape[-1]:
        ctx.fail(f"kernel {kernel.shape} does not fit per-step input of shape {v.shape}")
    groups = prod(v.shape[:-1]) if len(v.shape) > 1 else 1
    W = np.tile(kernel, (1, groups)) if groups > 1 else kernel
    b = np.tile(bias, groups) if bias is not None and groups > 1 else bias
    out = ctx.linear(v, W, b, v.shape[:-1] + (O,), groups=groups)
    return emit_activation(ctx, out, L.get("activation"))


@layer("Embedding")
def _embedding(ctx: Context, L: Layer, ins: list, per_frame: bool):
    v = ins[0]
    if not v.ids:
        ctx.fail("an Embedding that does not read the model input directly (lstm-infer "
                 "checks token ids where they enter the model)")
    table = ctx.weights(L, 1)[0]
    V, D = table.shape
    if L.get("mask_zero"):
        ctx.warn("mask_zero=True: steps with token id 0 are NOT skipped by lstm-infer (the "
                 "results agree on sequences without id 0)")
    vid = ctx.emit("Embedding", [v.vid], {"num_embeddings": int(V), "embedding_dim": int(D),
                                          "count": v.size}, {"table": table})
    return KValue(vid, v.shape + (int(D),), v.time, v.prefix_ok)


@layer("Flatten")
def _flatten(ctx: Context, L: Layer, ins: list, per_frame: bool):
    v = ins[0]
    if v.time and not per_frame:
        ctx.fail("Flatten on a (batch, time, ...) tensor merges time into the features; "
                 "wrap it in TimeDistributed to flatten each frame")
    return v.derive(v.vid, (v.size,))


@layer("Reshape")
def _reshape(ctx: Context, L: Layer, ins: list, per_frame: bool):
    """Per-step reshapes only (the IR stores values flat, so no node is needed)."""
    v = ins[0]
    target = [int(d) if d is not None else -1 for d in L.get("target_shape")]
    if v.time and not per_frame:
        T = ctx.fixed_T
        if not target or not (target[0] == -1 or (T is not None and target[0] == T)):
            ctx.fail(f"Reshape to {tuple(target)} mixes time with the features; only "
                     "reshapes that keep the time axis first (-1 or the fixed length) and "
                     "reshape each step are supported")
        target = target[1:]
    if target.count(-1) > 1:
        ctx.fail(f"Reshape target {tuple(target)} has more than one -1")
    known = prod(d for d in target if d != -1)
    if -1 in target:
        if known == 0 or v.size % known:
            ctx.fail(f"Reshape of per-step shape {v.shape} to {tuple(target)}")
        target[target.index(-1)] = v.size // known
    if prod(target) != v.size:
        ctx.fail(f"Reshape of per-step shape {v.shape} (size {v.size}) to {tuple(target)}")
    return v.derive(v.vid, tuple(target))
