"""Keras attention layers over per-step values: MultiHeadAttention and Attention (dot
scores), emitted as the IR's CausalAttention (streams) or SequenceAttention (run() only),
the same ops the PyTorch importer emits for nn.MultiheadAttention.

Which op (prefix semantics, DESIGN.md: row t of run() is the model on the sequence
ended at t):
- query, key and value at every step, `use_causal_mask=True` in the call (a call
  argument: the functional config keeps it in the layer's inbound node kwargs): full
  causal attention, CausalAttention streamed up to `attention_max_len` steps (converter
  option, default 4096); with MultiHeadAttention(sliding_window=W) a ring of W steps that
  streams forever;
- no causal mask: every step sees the whole sequence, SequenceAttention (run() only;
  stream() raises NotStreamableError); sliding_window=W is the band |t - s| < W;
- a query without a time axis (a last-step value reshaped to (1, F)) over keys/values at
  every step: at step t the query of the prefix attends to the whole prefix, which is
  CausalAttention read at the last step (streams, same maximum length).
Additive scores (AdditiveAttention, Attention(score_mode='concat')), attention masks,
return_attention_scores are refused naming the layer.
"""
from __future__ import annotations

import math
from math import prod

import numpy as np

from lstm_infer.ops.causal_attention import MAX_WINDOW

from ...layout import keras_attention_kernel, keras_attention_output
from ..context import Context, Layer
from ..values import KValue, Refused
from .registry import layer

DEFAULT_MAX_LEN = 4096      # as the PyTorch importer (converters/torch_import/ops/attention.py)
_MASKS = ("attention_mask", "query_mask", "value_mask", "key_mask", "mask")


def _max_len(ctx: Context) -> int:
    n = ctx.options.get("attention_max_len", DEFAULT_MAX_LEN)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_WINDOW:
        ctx.fail(f"option attention_max_len={n!r}: expected an integer in [1, {MAX_WINDOW}]")
    return n


def _operands(ctx: Context, L: Layer, ins: list, names: tuple) -> list[KValue | None]:
    """The call's tensors by role: positional first, then by keyword (`names` order)."""
    for m in _MASKS:
        if m in L.kwargs:
            ctx.fail(f"called with {m}=...: attention masks are not supported (causal "
                     "attention: use_causal_mask=True; lstm-infer runs unpadded sequences, "
                     "pass lengths to run() instead of a padding mask)")
    if L.options.get("return_attention_scores"):
        ctx.fail("return_attention_scores=True: the attention scores are not an output "
                 "lstm-infer computes")
    vals = list(ins)
    for n in names[len(vals):]:
        got = L.kw_values.get(n, [None])
        vals.append(got[0] if got else None)
    for n, v in zip(names, vals):
        if isinstance(v, Refused):
            ctx.fail(f"{n} reads an output that cannot be converted: {v.reason}")
    return vals + [None] * (len(names) - len(vals))


def _check(ctx: Context, q: KValue, k: KValue, v: KValue) -> bool:
    """True when the query is a last-step value (1, F); keys/values must be per step."""
    for n, x in (("key", k), ("value", v)):
        if not x.time or len(x.shape) != 1:
            ctx.fail(f"{n} of per-step shape {x.shape}{'' if x.time else ' without a time axis'}:"
                     " expected (batch, time, features), the sequence of every step")
    if q.time:
        if len(q.shape) != 1:
            ctx.fail(f"query of per-step shape {q.shape}: expected (batch, time, features)")
        return False
    if len(q.shape) != 2 or q.shape[0] != 1:
        ctx.fail(f"query of shape {q.shape} without a time axis: expected a single query "
                 "(1, features), e.g. Reshape((1, F)) of a last-step value")
    if _causal(ctx):
        ctx.fail("use_causal_mask=True with a single (last-step) query: Keras's causal mask "
                 "then lets it see only the first step; drop the causal mask (the last "
                 "step attending to every step is what streams)")
    return True


def _causal(ctx: Context) -> bool:
    return bool(ctx.layer.options.get("use_causal_mask"))


def _attend(ctx: Context, q: KValue, k: KValue, v: KValue, heads: int, D: int, scale,
            q_last: bool, sliding: int | None) -> tuple[str, bool]:
    """The attention node over projected q, k, v; (value id, whether it streams)."""
    w = {"scale": np.asarray(scale, np.float32).reshape(1)}
    causal = _causal(ctx)
    if q_last and sliding:
        ctx.fail(f"sliding_window={sliding} with a single (last-step) query: Keras's window "
                 "then covers the first steps only")
    if not (causal or q_last):
        band = -1 if not sliding else sliding - 1
        return ctx.emit("SequenceAttention", [q.vid, k.vid, v.vid],
                        {"heads": heads, "head_dim": D, "back": band, "ahead": band}, w), False
    limit = not sliding
    window = _max_len(ctx) if limit else sliding
    if limit:
        ctx.warn(f"full causal attention streams up to attention_max_len={window} steps per "
                 f"sequence (keys/values of every step kept: {2 * window * heads * D} floats "
                 "per stream); longer sequences are refused")
    return ctx.emit("CausalAttention", [q.vid, k.vid, v.vid],
                    {"heads": heads, "head_dim": D, "window": window, "limit": limit}, w), True


@layer("MultiHeadAttention")
def _multi_head(ctx: Context, L: Layer, ins: list, per_frame: bool):
    """query/key/value projections (EinsumDense, kernels (F, heads, dim)), attention with
    scale 1/sqrt(key_dim), an optional sigmoid gate, the output projection."""
    if per_frame:
        ctx.fail("MultiHeadAttention inside TimeDistributed (attention within one frame)")
    q, v, k = _operands(ctx, L, ins, ("query", "value", "key"))
    if q is None or v is None:
        ctx.fail("expected query and value tensors")
    k = v if k is None else k
    q_last = _check(ctx, q, k, v)
    axes = L.get("attention_axes")
    if axes not in (None, [1], (1,), 1):
        ctx.fail(f"attention_axes={axes}: only attention over time (axis 1)")
    H, Dk = int(L.get("num_heads")), int(L.get("key_dim"))
    Dv = int(L.get("value_dim") or Dk)
    D = max(Dk, Dv)      # the IR's one head_dim: the shorter of q/k and v is zero-padded
    use_bias, gate = bool(L.get("use_bias", True)), bool(L.get("use_gate", False))
    per = 2 if use_bias else 1
    ws = ctx.weights(L, per * (5 if gate else 4))
    names = ["query", "key"] + (["gate"] if gate else []) + ["value", "output"]
    got = {n: (ws[per * j], ws[per * j + 1] if use_bias else None) for j, n in enumerate(names)}
    F = q.shape[-1]

    def proj(x: KValue, role: str, dim: int) -> KValue:
        kernel, bias = got[role]
        if kernel.shape != (x.shape[-1], H, dim):
            ctx.fail(f"{role} kernel {kernel.shape} does not fit {x.shape[-1]} features, "
                     f"{H} heads of {dim}")
        W, b = keras_attention_kernel(kernel, bias, D)
        return ctx.linear(x, W, b, x.shape[:-1] + (H * D,), suffix=f".{role}")

    qp, kp, vp = proj(q, "query", Dk), proj(k, "key", Dk), proj(v, "value", Dv)
    vid, streams = _attend(ctx, qp, kp, vp, H, D, 1.0 / math.sqrt(Dk), q_last,
                           L.get("sliding_window"))
    att = KValue(vid, qp.shape, q.time, q.prefix_ok and k.prefix_ok and v.prefix_ok and streams)
    if gate:
        g = ctx.act(proj(q, "gate", Dv), "sigmoid", suffix=".gate_sigmoid")
        att = ctx.binary("mul", att, g, suffix=".gated")
    kernel, bias = got["output"]
    out_shape = L.get("output_shape")
    out_shape = (F,) if out_shape is None else tuple(
        int(d) for d in (out_shape if isinstance(out_shape, (list, tuple)) else [out_shape]))
    if kernel.shape != (H, Dv) + out_shape:
        ctx.fail(f"output kernel {kernel.shape} does not fit {H} heads of {Dv} -> {out_shape}")
    W = keras_attention_output(kernel, D)
    b = None if bias is None else bias.reshape(-1)
    return ctx.linear(att, W, b, q.shape[:-1] + (prod(out_shape),), suffix=".output")


@layer("Attention")
def _dot_attention(ctx: Context, L: Layer, ins: list, per_frame: bool):
    """Luong-style single-head attention: softmax(scale * q . k) v, scale the learned
    scalar with use_scale=True, else 1."""
    if L.get("score_mode", "dot") != "dot":
        ctx.fail(f"score_mode={L.get('score_mode')!r}: additive (concat) scores are not "
                 "expressible by lstm-infer's attention ops (dot-product only); use "
                 "score_mode='dot' or MultiHeadAttention")
    if per_frame:
        ctx.fail("Attention inside TimeDistributed (attention within one frame)")
    vals = list(ins) or [x for x in (L.kw_values.get("inputs") or []) if x is not None]
    if len(vals) not in (2, 3):
        ctx.fail(f"expected inputs [query, value] or [query, value, key], got {len(vals)}")
    for x in vals:
        if isinstance(x, Refused):
            ctx.fail(f"reads an output that cannot be converted: {x.reason}")
    _operands(ctx, L, [], ())
    q, v = vals[0], vals[1]
    k = vals[2] if len(vals) > 2 else v
    q_last = _check(ctx, q, k, v)
    if not q.shape[-1] == k.shape[-1] == v.shape[-1]:
        ctx.fail(f"query, key and value features {q.shape[-1]}, {k.shape[-1]}, {v.shape[-1]} "
                 "differ (the IR's attention has one head size)")
    scale = ctx.weights(L, 1)[0] if L.get("use_scale") else np.float32(1.0)
    D = q.shape[-1]
    vid, streams = _attend(ctx, q, k, v, 1, D, scale, q_last, None)
    return KValue(vid, q.shape, q.time, q.prefix_ok and k.prefix_ok and v.prefix_ok and streams)


@layer("AdditiveAttention")
def _additive(ctx: Context, L: Layer, ins: list, per_frame: bool):
    ctx.fail("additive (Bahdanau) scores sum(tanh(q + k)) are not expressible by lstm-infer's "
             "attention ops (dot-product only); use Attention(score_mode='dot') or "
             "MultiHeadAttention")
