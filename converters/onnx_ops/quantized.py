"""Quantized ONNX ops on per-step data: DequantizeLinear, and onnxruntime's contrib
`com.microsoft.DynamicQuantizeLSTM` (what onnxruntime.quantization.quantize_dynamic writes
for an LSTM). The DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul head that the same
tool writes for a MatMul is rewritten to a float MatMul before the walk (onnx_quant).

DynamicQuantizeLSTM is an ONNX LSTM (same attributes, inputs 0-7, gate order i, o, f, c)
whose W (D, I, 4H) and R (D, H, 4H) are int8/uint8 in (in, out) layout, i.e. transposed
against ONNX LSTM's, with W_scale, W_zero_point, R_scale, R_zero_point (inputs 8-11) of
shape (D,) (per direction) or (D, 4H) (per output column). The weights dequantize as
(q - zero_point) * scale. When every zero point is 0 and the weights are int8, they map
exactly onto the engine's int8 matrices (symmetric, one float32 scale per output column,
docs/FORMAT.md): the columns are only put in our gate order. Otherwise they are
dequantized to float32.

Numerics: onnxruntime also quantizes the *activations* (the input sequence and h at each
step) to uint8 with a dynamic per-tensor range before its integer GEMMs; the engine
keeps activations in float32 and dequantizes the weights on the fly. The results differ
by that activation rounding (measured in tests/test_corpus_tokens.py), which is the
source's approximation of its own float model, not an error of the conversion.
"""
from __future__ import annotations

import numpy as np

from ..layout import ONNX_GATE_ORDER
from ..onnx_graph import OnnxConversionError, OnnxValue
from .common import is_val, to_dyn
from .elementwise import affine
from .registry import HANDLERS, op


def _const(x, what: str) -> np.ndarray:
    if x is None:
        raise OnnxConversionError(f"{what} is missing")
    if is_val(x):
        raise OnnxConversionError(f"{what} must be a constant (an initializer)")
    return np.asarray(x)


@op("DequantizeLinear")
def _dequantize_linear(ctx, node, ins, a):
    """y = (x - zero_point) * scale on per-step data (two Scale ops, folded later; an
    embedding's integer table absorbs them exactly)."""
    d = to_dyn(ins[0])
    scale = _const(ins[1], "DequantizeLinear scale").astype(np.float64)
    zp = None if len(ins) < 3 or ins[2] is None else _const(ins[2], "DequantizeLinear zero point")
    if int(a.get("block_size", 0)):
        raise OnnxConversionError("blocked DequantizeLinear (block_size) is not supported")
    if scale.ndim == 1 and scale.size > 1:  # per axis: broadcast along `axis`
        ax = int(a.get("axis", 1))
        ax = ax + d.rank if ax < 0 else ax
        shape = [1] * d.rank
        shape[ax] = scale.size
        scale = scale.reshape(shape)
        zp = None if zp is None else zp.reshape(shape)
    if zp is not None and np.any(zp != 0):
        d = affine(ctx, node, d, shift=-zp.astype(np.float64))
    return [OnnxValue(affine(ctx, node, d, scale=scale))]


def dequantize(q: np.ndarray, scale, zero_point, D: int, what: str) -> np.ndarray:
    """(D, rows, 4H) integer weights -> float64, with per-direction or per-column scales."""
    s = _const(scale, f"{what}_scale").astype(np.float64)
    z = (np.zeros_like(s, dtype=np.int64) if zero_point is None
         else _const(zero_point, f"{what}_zero_point").astype(np.int64))
    G = q.shape[-1]
    for arr, name in ((s, "scale"), (z, "zero_point")):
        if arr.shape not in ((D,), (D, G)):
            raise OnnxConversionError(f"DynamicQuantizeLSTM {what}_{name} has shape {arr.shape}; "
                                      f"expected ({D},) or ({D}, {G})")
    s = s.reshape(D, 1, -1)
    z = z.reshape(D, 1, -1)
    return (q.astype(np.float64) - z) * s


def _column_scales(scale, D: int, G: int) -> np.ndarray:
    s = np.asarray(scale, np.float32)
    return np.broadcast_to(s.reshape(D, -1), (D, G)).copy()


def _keep_int8(ctx, nodes: list[dict], roles: dict, H: int) -> None:
    """Replace the dequantized float W_ih / W_hh of the emitted LSTM nodes (one per
    direction) with the source's int8 matrices and per-column scales, in our gate order."""
    from lstm_infer.graph import parse_graph
    b = ctx.builder
    cols = np.concatenate([np.arange(k * H, (k + 1) * H) for k in ONNX_GATE_ORDER["LSTM"]])
    for k, nd in enumerate(nodes):
        for role, (q, scales) in roles.items():
            Q = np.ascontiguousarray(q[k][:, cols].astype(np.int8))
            s = np.ascontiguousarray(scales[k][cols].astype(np.float32))
            tname = nd["weights"][role]
            if not np.allclose(b.tensors[tname], Q * s, rtol=1e-6, atol=1e-7):
                raise OnnxConversionError(f"DynamicQuantizeLSTM: int8 layout of {role} does not "
                                          "reproduce the dequantized weights (converter bug)")
            b.tensors[tname] = Q
            b.tensors[f"{tname}.scale"] = s
            nd["weights"][f"{role}.scale"] = f"{tname}.scale"
    parse_graph(b.document(), b.tensors)


@op("com.microsoft.DynamicQuantizeLSTM")
def _dynamic_quantize_lstm(ctx, node, ins, a):
    from onnx import helper
    ins = list(ins) + [None] * (12 - len(ins))
    Wq = _const(ins[1], "DynamicQuantizeLSTM W")
    Rq = _const(ins[2], "DynamicQuantizeLSTM R")
    if Wq.ndim != 3 or Rq.ndim != 3 or Wq.dtype.kind not in "iu" or Rq.dtype.kind not in "iu":
        raise OnnxConversionError(f"DynamicQuantizeLSTM W/R must be 8-bit integer (D, rows, 4H) "
                                  f"tensors, got {Wq.dtype} {Wq.shape} / {Rq.dtype} {Rq.shape}")
    D, G = Wq.shape[0], Wq.shape[2]
    H = G // 4
    W = dequantize(Wq, ins[8], ins[9], D, "W")
    R = dequantize(Rq, ins[10], ins[11], D, "R")
    # the same layer as an ONNX LSTM: W (D, 4H, I), R (D, 4H, H), inputs 3-7 as they are
    lstm = helper.make_node("LSTM", list(node.input[:8]), list(node.output),
                            name=node.name or "dynamic_quantize_lstm")
    start = len(ctx.builder.nodes)
    outs = HANDLERS["LSTM"](ctx, lstm, [ins[0], W.transpose(0, 2, 1), R.transpose(0, 2, 1)]
                            + ins[3:8], a)
    emitted = [nd for nd in ctx.builder.nodes[start:] if nd["op"] == "LSTM"]
    zero = all(z is None or not np.any(np.asarray(z)) for z in (ins[9], ins[11]))
    scales_ok = all(np.all(np.isfinite(np.asarray(s))) and np.all(np.asarray(s) >= 0)
                    for s in (ins[8], ins[10]))
    where = f"DynamicQuantizeLSTM {node.name!r}"
    if Wq.dtype == np.int8 and Rq.dtype == np.int8 and zero and scales_ok and len(emitted) == D:
        _keep_int8(ctx, emitted, {"W_ih": (Wq, _column_scales(ins[8], D, G)),
                                  "W_hh": (Rq, _column_scales(ins[10], D, G))}, H)
        ctx.warnings.append(
            f"{where}: int8 weights kept exactly (per-column scales); onnxruntime also rounds "
            "the activations (input and h) to uint8 at run time, the engine keeps them float32, "
            "so outputs differ from onnxruntime at that rounding's level")
    else:
        ctx.warnings.append(f"{where}: weights with nonzero zero points or uint8 storage are "
                            "dequantized to float32; onnxruntime also rounds the activations to "
                            "uint8, so outputs differ from onnxruntime at that rounding's level")
    return outs


@op("DynamicQuantizeLinear", "MatMulInteger")
def _dynamic_quantize_linear(ctx, node, ins, a):
    raise OnnxConversionError(
        f"{node.op_type} on per-step data is supported only as onnxruntime's dynamically "
        "quantized MatMul: DynamicQuantizeLinear(x) -> MatMulInteger(x_q, W, x_zero_point, "
        "W_zero_point) -> Cast(float) -> Mul(x_scale * W_scale), which becomes a float MatMul "
        "with dequantized weights; this graph uses it differently")
