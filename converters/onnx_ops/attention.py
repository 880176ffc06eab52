"""ONNX `Attention` (opset 23; torch.onnx.export(dynamo=True, opset_version>=23) writes it
for F.scaled_dot_product_attention) over per-step q, k, v -> the IR's CausalAttention
(is_causal=1: streams up to 4096 steps, the PyTorch importer's default attention_max_len)
or SequenceAttention (no mask: looks ahead, run() only; stream() raises
NotStreamableError naming the node).

Operands are (B, heads, T, head_dim) or (B, T, heads*head_dim) with q_num_heads; the IR
wants each step's heads*head_dim features with head h in columns h*D..(h+1)*D, i.e. the
4-D operand transposed to (B, T, heads, head_dim) before it is laid out. Masks, past
keys/values, grouped heads, softcap and the extra outputs are refused."""
from __future__ import annotations

import math

import numpy as np

from ..onnx_graph import OnnxConversionError, OnnxValue
from ..onnx_sym import Dyn, transpose
from .common import is_val, to_dyn
from .registry import op

MAX_LEN = 4096      # full causal attention's window, as torch_import/ops/attention.DEFAULT_MAX_LEN


def _per_step(ctx, d: Dyn, what: str, heads: int | None) -> tuple[Dyn, int, int, list]:
    """(d laid out per step as (heads, D), heads, D, axis order used) or a clear error."""
    t, b = d.axis_of("T"), d.axis_of("B")
    if t is None or d.axes[t] != ("T",) or d.kind != "data" or d.readout is not None:
        raise OnnxConversionError(f"Attention {what} {d.describe()}: expected the sequence of "
                                  "every step (a time axis)")
    lead = [k for k in (b, t) if k is not None]
    feats = [k for k in range(d.rank) if k not in lead]
    if d.rank == 4 and feats == [1, 3]:
        H, D = d.fshape[1], d.fshape[3]
    elif d.rank == 3 and feats == [2] and heads:
        H, D = heads, d.fshape[2] // heads
        if H * D != d.fshape[2]:
            raise OnnxConversionError(f"Attention {what}: {d.fshape[2]} features do not split "
                                      f"into q_num_heads={heads}")
    else:
        raise OnnxConversionError(f"Attention {what} {d.describe()}: expected (B, heads, T, "
                                  "head_dim), or (B, T, hidden) with q_num_heads")
    perm = lead + feats
    return ctx.as_data(transpose(d, perm)), H, D, perm


@op("Attention")
def _attention(ctx, node, ins, a):
    ins = list(ins) + [None] * (6 - len(ins))
    q, k, v, mask, past_k, past_v = ins[:6]
    if mask is not None or past_k is not None or past_v is not None or any(ins[6:]):
        raise OnnxConversionError("Attention with attn_mask, past_key/past_value or "
                                  "nonpad_kv_seqlen inputs is not supported (is_causal=1 for "
                                  "causal attention; no mask attends to every step, run() only)")
    if any(node.output[1:]):
        raise OnnxConversionError("Attention's present_key/present_value/qk_matmul_output "
                                  "outputs are not supported")
    if float(a.get("softcap", 0.0)) != 0.0:
        raise OnnxConversionError(f"Attention with softcap={a.get('softcap')} is not supported")
    for w in ("left_window_size", "right_window_size"):
        if int(a.get(w, -1)) != -1:
            raise OnnxConversionError(f"Attention with {w}={a.get(w)} is not supported")
    if not all(is_val(x) for x in (q, k, v)):
        raise OnnxConversionError("Attention of constant query/key/value")
    qh, kh = a.get("q_num_heads"), a.get("kv_num_heads")
    if qh is not None and kh is not None and int(qh) != int(kh):
        raise OnnxConversionError(f"Attention with q_num_heads={qh} != kv_num_heads={kh} "
                                  "(grouped keys/values) is not supported")
    heads = int(qh) if qh is not None else None
    (qd, H, D, perm), (kd, Hk, Dk, _), (vd, Hv, Dv, _) = (
        _per_step(ctx, to_dyn(x), n, heads) for x, n in ((q, "query"), (k, "key"), (v, "value")))
    if (H, D) != (Hk, Dk) or (H, D) != (Hv, Dv):
        raise OnnxConversionError(f"Attention: q {H}x{D}, k {Hk}x{Dk}, v {Hv}x{Dv} heads x "
                                  "head_dim differ")
    scale = a.get("scale")
    w = {"scale": np.array([1.0 / math.sqrt(D) if scale is None else float(scale)], np.float32)}
    name = node.name or "attention"
    ins_ir = [qd.ref, kd.ref, vd.ref]
    if int(a.get("is_causal", 0)):
        ctx.warnings.append(f"{name}: full causal attention streams up to {MAX_LEN} steps per "
                            f"sequence (keys/values of every step kept: {2 * MAX_LEN * H * D} "
                            "floats per stream); longer sequences are refused")
        out = ctx.emit("CausalAttention", name, ins_ir,
                       {"heads": H, "head_dim": D, "window": MAX_LEN, "limit": True}, w)
    else:
        out = ctx.emit("SequenceAttention", name, ins_ir,
                       {"heads": H, "head_dim": D, "back": -1, "ahead": -1}, w)
    # The output laid out like the transposed query; transposed back to the query's order.
    y = Dyn("data", out, np.arange(H * D, dtype=np.int64).reshape(qd.idx.shape), qd.axes)
    return [OnnxValue(transpose(y, list(np.argsort(perm))))]
