"""Self-attention over per-step values: nn.MultiheadAttention (called through
`lstm_infer::multihead_attention`, see ../mha_hook.py) and
`F.scaled_dot_product_attention` on q/k/v projections split into heads (view(B, T, H, D)
+ transpose, see shape.py), emitted as CausalAttention (streams) or SequenceAttention
(run() only).

The mask decides (prefix semantics: row t of run() is the model on the sequence ended at t):
- lower-triangular (`is_causal=True`, a causal attn_mask): full causal attention, streamed
  up to a maximum length fixed at conversion, option `attention_max_len` (default 4096;
  the stream keeps 2 * max_len * E floats of keys/values), refused past it;
- a band of width W (step t sees t-W+1..t): a sliding window, a ring of W steps, forever;
- a query that is the last step (`h[:, -1:]`) over all keys/values: at step t that is
  the last step of the prefix attending to the whole prefix, i.e. full causal attention
  read at the last step (the same max length);
- a mask that looks ahead (none at all, or a band into the future): SequenceAttention,
  run() only; stream() raises NotStreamableError naming the node;
- any other mask (padding, irregular) cannot be expressed for other lengths: refused.
The mask is a constant of the traced length T, so a band at least T wide reads as
lower-triangular: export with an example longer than the band (a warning says so).
"""
from __future__ import annotations

import math

import numpy as np

from ...layout import linear_weight
from ..context import Context
from ..fx import fx_shape, is_tensor, to_numpy, torch_module
from ..mha_hook import attention_of
from ..values import TorchValue
from .registry import op

DEFAULT_MAX_LEN = 4096
MAX_LEN_LIMIT = 1 << 16     # ops/causal_attention.MAX_WINDOW


def max_len(ctx: Context) -> int:
    n = ctx.options.get("attention_max_len", DEFAULT_MAX_LEN)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_LEN_LIMIT:
        ctx.fail(f"option attention_max_len={n!r}: expected an integer in [1, {MAX_LEN_LIMIT}]")
    return n


def mask_band(ctx: Context, mask, true_means: str, T: int) -> tuple[int, int]:
    """(back, ahead) of a (T, T) attention mask (-1: unbounded). `true_means`: 'masked'
    (nn.MultiheadAttention's bool masks) or 'attend' (scaled_dot_product_attention's)."""
    if not is_tensor(mask):
        ctx.fail("an attention mask computed from the input (a constant mask is supported: "
                 "causal, or a band of width W)")
    m = to_numpy(mask) if mask.dtype != torch_module().bool else mask.detach().cpu().numpy()
    while m.ndim > 2 and m.shape[0] == 1:
        m = m[0]
    if m.shape != (T, T):
        ctx.fail(f"attention mask of shape {tuple(mask.shape)}: expected ({T}, {T}) over the "
                 "sequence's steps (per-batch or per-head masks are not supported)")
    if m.dtype == bool:
        ok = ~m if true_means == "masked" else m
    else:
        if not np.all((m == 0) | np.isneginf(m)):
            ctx.fail("a float attention mask with values other than 0 and -inf (an additive "
                     "attention bias) is not supported")
        ok = m == 0
    if not ok.any(axis=1).all():
        ctx.fail("an attention mask with a query that may attend to nothing")
    d = np.arange(T)[:, None] - np.arange(T)[None, :]
    back, ahead = int(d[ok].max()), int((-d[ok]).max())
    if back < 0 or ahead < 0 or not np.array_equal(ok, (d <= back) & (-d <= ahead)):
        ctx.fail("an attention mask that is not a band around the diagonal (causal, a sliding "
                 "window, or a window that looks ahead); such a mask (e.g. padding) holds only "
                 f"at the traced length {T} and cannot be expressed for other lengths")
    return (-1 if back >= T - 1 else back), (-1 if ahead >= T - 1 else ahead)


def attend(ctx: Context, q: TorchValue, k: TorchValue, v: TorchValue, heads: int, D: int,
           scale: float, back: int, ahead: int, name: str, masked: bool) -> str:
    """The attention node over projected q, k, v (E = heads * D features each)."""
    w = {"scale": np.array([scale], np.float32)}
    if ahead != 0:
        return ctx.emit("SequenceAttention", name, [q.vid, k.vid, v.vid],
                        {"heads": heads, "head_dim": D, "back": back, "ahead": ahead}, w, heads * D)
    limit = back < 0
    window = max_len(ctx) if limit else back + 1
    if limit:
        T = ctx.T or 1
        note = (f" (the mask at the traced length {T} is lower-triangular; a band at least {T} "
                "wide reads the same: export with an example longer than the band)"
                if masked and T > 1 else "")
        ctx.warnings.append(
            f"{name}: full causal attention streams up to attention_max_len={window} steps per "
            f"sequence (keys/values of every step kept: {2 * window * heads * D} floats per "
            f"stream); longer sequences are refused{note}")
    return ctx.emit("CausalAttention", name, [q.vid, k.vid, v.vid],
                    {"heads": heads, "head_dim": D, "window": window, "limit": limit}, w, heads * D)


def _time_of(ctx: Context, x: TorchValue, d: int, what: str) -> bool:
    """Bind x's axis d to time; True when x is the last step only (a size-1 axis there)."""
    if x.t is not None:
        if x.t != (ctx.T or 1) - 1 or x.shape[d] != 1:
            ctx.fail(f"{what}: a query at time step {x.t} (only the last step, or every step)")
        return True
    ctx.bind(x.dims[d], "T")
    ctx.set_T(x.shape[d])
    return False


def _band(ctx: Context, q_last: bool, mask, true_means: str, is_causal: bool) -> tuple[int, int, bool]:
    if q_last:   # the last step over the whole prefix: causal by construction
        if mask is not None and (not is_tensor(mask) or not _all_allowed(mask, true_means)):
            ctx.fail("an attention mask on a last-step query (only attending to every step)")
        return -1, 0, False
    if mask is None:   # nn.MultiheadAttention reads a given mask even with is_causal (a hint)
        return -1, (0 if is_causal else -1), False
    back, ahead = mask_band(ctx, mask, true_means, ctx.T or 1)
    return back, ahead, True


def _all_allowed(mask, true_means: str) -> bool:
    torch = torch_module()
    if mask.dtype == torch.bool:
        return bool((~mask).all() if true_means == "masked" else mask.all())
    return bool((mask == 0).all())


@op("multihead_attention")
def _mha(ctx: Context, tgt, a):
    """nn.MultiheadAttention(q, k, v) called through the hook's op (module in memory)."""
    entry = attention_of(a["key"])
    if entry is None:
        ctx.fail("a multihead_attention op outside convert_torch (export the module with "
                 "convert_torch)")
    m, path = entry
    return emit_mha(ctx, m, path, a["q"], a["k"], a["v"], a["attn_mask"], a["is_causal"])


def emit_mha(ctx: Context, m, path: str, q, k, v, attn_mask, is_causal: bool) -> TorchValue:
    """nn.MultiheadAttention `m` on per-step q, k, v: per-step in-projections, attention,
    out_proj. Shared by the hook (`_mha`) and the saved-program path (../mha_program.py);
    the output takes the shape of the FX node being converted (ctx.cur)."""
    if m.bias_k is not None or m.add_zero_attn:
        ctx.fail(f"nn.MultiheadAttention {path!r} with add_bias_kv/add_zero_attn (extra key "
                 "slots that are not time steps)")
    q, k, v = (ctx.val(x, f"nn.MultiheadAttention {path!r}") for x in (q, k, v))
    n = len(q.shape)
    if n not in (2, 3) or len(k.shape) != n or len(v.shape) != n:
        ctx.fail(f"nn.MultiheadAttention {path!r} on shapes {q.shape}, {k.shape}, {v.shape}")
    td = 0 if n == 2 or not m.batch_first else 1
    for x in (q, k, v):
        if n == 3:
            ctx.bind(x.dims[1 - td], "B")
        ctx.need_last_feature(x, f"nn.MultiheadAttention {path!r}")
    if _time_of(ctx, k, td, path) or _time_of(ctx, v, td, path):
        ctx.fail(f"nn.MultiheadAttention {path!r}: keys/values of a single time step (expected "
                 "the sequence of every step)")
    q_last = _time_of(ctx, q, td, path)
    back, ahead, masked = _band(ctx, q_last, attn_mask, "masked", is_causal)
    E, H = m.embed_dim, m.num_heads
    if m._qkv_same_embed_dim:
        Ws = m.in_proj_weight.detach().chunk(3)
    else:
        Ws = (m.q_proj_weight.detach(), m.k_proj_weight.detach(), m.v_proj_weight.detach())
    bs = (None,) * 3 if m.in_proj_bias is None else m.in_proj_bias.detach().chunk(3)
    # torch (out, in) rows -> IR (in, out): linear_weight; q rows 0:E, k E:2E, v 2E:3E.
    qp, kp, vp = (ctx.linear(x, linear_weight(to_numpy(W)), None if b is None else to_numpy(b),
                             f"{path}.{s}_proj")
                  for x, W, b, s in zip((q, k, v), Ws, bs, "qkv"))
    vid = attend(ctx, qp, kp, vp, H, E // H, 1.0 / math.sqrt(E // H), back, ahead,
                 f"{path}.attention", masked)
    att = TorchValue(vid, E, q.dims, q.shape, q.t)
    o = m.out_proj
    out = ctx.linear(att, linear_weight(to_numpy(o.weight.detach())),
                     None if o.bias is None else to_numpy(o.bias.detach()), f"{path}.out_proj")
    return TorchValue(out.vid, E, q.dims, fx_shape(ctx.cur), q.t)


def _heads(ctx: Context, x: TorchValue, what: str) -> tuple[int, int, bool]:
    """(heads, head_dim, last step only) of an sdpa operand (..., [H,] T, D)."""
    if len(x.shape) < 2 or ctx.res(x.dims[-1]) != "F":
        ctx.fail(f"{what}: operand of shape {x.shape} without its features last")
    D = x.shape[-1]
    heads = x.shape[-3] if len(x.shape) >= 3 and ctx.res(x.dims[-3]) == "H" else 1
    if heads * D != x.size:
        ctx.fail(f"{what}: operand of shape {x.shape} holds {heads} x {D} of its {x.size} "
                 "features (split the features into heads with view(..., H, D).transpose)")
    return heads, D, _time_of(ctx, x, len(x.shape) - 2, what)


@op("scaled_dot_product_attention")
def _sdpa(ctx: Context, tgt, a):
    what = "scaled_dot_product_attention"
    q, k, v = (ctx.val(a[n], what) for n in ("query", "key", "value"))
    if a.get("dropout_p", 0.0) not in (0, 0.0):
        ctx.fail(f"{what} with dropout_p={a['dropout_p']} (pass 0 in eval)")
    if a.get("enable_gqa"):
        ctx.fail(f"{what} with enable_gqa (grouped keys/values)")
    (H, D, q_last), (Hk, Dk, k_last), (Hv, Dv, v_last) = (_heads(ctx, x, what) for x in (q, k, v))
    if (H, D) != (Hk, Dk) or (H, D) != (Hv, Dv):
        ctx.fail(f"{what}: q {H}x{D}, k {Hk}x{Dk}, v {Hv}x{Dv} heads x head_dim differ")
    if k_last or v_last:
        ctx.fail(f"{what}: keys/values of a single time step (expected every step)")
    for x, y in ((q, k), (q, v)):
        for dx, dy in zip(x.dims[:-2], y.dims[:-2]):
            ctx.bind(dx, dy)
    back, ahead, masked = _band(ctx, q_last, a.get("attn_mask"), "attend", bool(a.get("is_causal")))
    scale = a.get("scale")
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    vid = attend(ctx, q, k, v, H, D, scale, back, ahead, ctx.node_name(), masked)
    return TorchValue(vid, q.size, q.dims, fx_shape(ctx.cur), q.t)
