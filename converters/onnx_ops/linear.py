"""Gemm / MatMul with a constant matrix -> `Linear`; Conv (1-D) -> `Conv1d`, or `Linear`
when it is a 1x1 convolution along an axis that holds time or batch (2-D over time and
frequency: conv2d.py)."""
from __future__ import annotations

import numpy as np

from ..onnx_graph import OnnxConversionError, OnnxValue
from ..onnx_sym import AxisError, Dyn, norm_axis, squeeze, transpose
from .attention_pool import SOFTMAX, is_pending, pooled_matmul
from .common import is_val, to_dyn
from .conv2d import conv2d
from .elementwise import binary
from .registry import op

MAX_BLOCK_WEIGHTS = 1 << 22


def contract(ctx, node, d: Dyn, axis: int, W: np.ndarray, bias: np.ndarray | None) -> Dyn:
    """Multiply axis `axis` (size K) of `d` by W (K, O): the axis becomes size O."""
    axis = norm_axis(axis, d.rank)
    K, O = W.shape
    if not d.is_feature_axis(axis):
        raise AxisError(f"{node.op_type} contracts axis {axis} of {d.describe()}, which holds "
                        "time/batch")
    if d.fshape[axis] != K:
        raise OnnxConversionError(f"{node.op_type}: inner sizes differ ({d.fshape[axis]} vs {K})")
    others = [k for k in range(d.rank) if k != axis]
    t = ctx.as_data(transpose(d, others + [axis]))
    R = int(np.prod([d.fshape[k] for k in others], dtype=np.int64))
    Wk, bk = W.astype(np.float32), None if bias is None else np.asarray(bias, np.float32).reshape(O)
    if R > 1:
        if R * K * R * O > MAX_BLOCK_WEIGHTS:
            raise OnnxConversionError(f"{node.op_type} applies one matrix to {R} rows per step; "
                                      "too large as one block-diagonal Linear")
        Wk = np.kron(np.eye(R, dtype=np.float32), Wk)
        bk = None if bk is None else np.tile(bk, R)
    v = ctx.emit("Linear", node.name or node.op_type.lower(), [t.ref],
                 {"in_features": R * K, "out_features": R * O}, {"W": Wk, "bias": bk})
    readout = ctx.mixed_readout(t, R * O, node.op_type)
    oshape = [d.fshape[k] for k in others] + [O]
    idx = np.moveaxis(np.arange(R * O, dtype=np.int64).reshape(oshape), -1, axis)
    axes = [d.axes[k] for k in others]
    axes.insert(axis, ("F",) if O > 1 else ())
    return Dyn("data", v, idx, axes, readout)


def _bias_vector(C: np.ndarray | None, N: int) -> np.ndarray | None:
    """C as a per-output bias if it only varies along the last axis."""
    if C is None:
        return None
    C = np.asarray(C, np.float64)
    if C.ndim <= 1 or all(n == 1 for n in C.shape[:-1]):
        return np.broadcast_to(C.reshape(-1), (N,)).copy() if C.size in (1, N) else None
    return None


@op("Gemm")
def _gemm(ctx, node, ins, a):
    A, B = ins[0], ins[1]
    C = ins[2] if len(ins) > 2 else None
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    ta, tb = int(a.get("transA", 0)), int(a.get("transB", 0))
    if is_val(C):
        raise OnnxConversionError("Gemm with a non-constant C is not supported")
    if is_val(A) and not is_val(B):
        Bm = np.asarray(B, np.float64)
        Bm = Bm.T if tb else Bm
        d = to_dyn(A)
        bias = _bias_vector(None if C is None else beta * np.asarray(C, np.float64), Bm.shape[1])
        y = contract(ctx, node, d, 0 if ta else 1, alpha * Bm, bias)
        if ta:
            y = transpose(y, [1, 0])
        out = OnnxValue(y)
        if C is not None and bias is None:
            out = binary(ctx, node, out, beta * np.asarray(C, np.float64), "add")
        return [out]
    if is_val(B) and not is_val(A):
        Am = np.asarray(A, np.float64)
        Am = Am.T if ta else Am             # (M, K)
        d = to_dyn(B)
        y = contract(ctx, node, d, 1 if tb else 0, (alpha * Am).T, None)  # axis K -> M
        if tb:
            y = transpose(y, [1, 0])
        out = OnnxValue(y)
        if C is not None:
            out = binary(ctx, node, out, beta * np.asarray(C, np.float64), "add")
        return [out]
    raise OnnxConversionError("Gemm of two per-step tensors is not supported (one operand must "
                              "be a constant weight matrix)")


@op("MatMul")
def _matmul(ctx, node, ins, a):
    A, B = ins
    if is_pending(A, SOFTMAX):
        return pooled_matmul(ctx, node, A, B)
    if is_val(A) and not is_val(B):
        Bm = np.asarray(B, np.float64)
        d = to_dyn(A)
        if Bm.ndim == 1:
            y = contract(ctx, node, d, -1, Bm[:, None], None)
            return [OnnxValue(squeeze(y, [y.rank - 1]))]
        if any(n != 1 for n in Bm.shape[:-2]):
            raise OnnxConversionError("MatMul with a batched constant matrix is not supported")
        y = contract(ctx, node, d, -1, Bm.reshape(Bm.shape[-2:]), None)
        for _ in range(Bm.ndim - y.rank):
            y = Dyn(y.kind, y.ref, y.idx[None], [()] + y.axes, y.readout)
        return [OnnxValue(y)]
    if is_val(B) and not is_val(A):
        Am = np.asarray(A, np.float64)
        d = to_dyn(B)
        if d.rank < 2:
            raise OnnxConversionError("MatMul of a constant matrix with a vector per step")
        if Am.ndim == 1:
            y = contract(ctx, node, d, -2, Am[:, None], None)
            return [OnnxValue(squeeze(y, [y.rank - 2]))]
        if any(n != 1 for n in Am.shape[:-2]):
            raise OnnxConversionError("MatMul with a batched constant matrix is not supported")
        y = contract(ctx, node, d, -2, Am.reshape(Am.shape[-2:]).T, None)
        for _ in range(Am.ndim - y.rank):
            y = Dyn(y.kind, y.ref, y.idx[None], [()] + y.axes, y.readout)
        return [OnnxValue(y)]
    raise OnnxConversionError("MatMul of two per-step tensors is not supported (one operand must "
                              "be a constant weight matrix)")


@op("Conv")
def _conv(ctx, node, ins, a):
    X, W = ins[0], ins[1]
    Bc = ins[2] if len(ins) > 2 else None
    if not is_val(X) or is_val(W) or is_val(Bc):
        raise OnnxConversionError("Conv needs a per-step input and constant weights")
    W = np.asarray(W, np.float32)
    if W.ndim == 4:  # over (time, freq): per frame or causal (onnx_ops/conv2d.py)
        return conv2d(ctx, node, X, W, Bc, a)
    if W.ndim != 3:
        raise OnnxConversionError(f"only 1-D convolutions are supported (kernel rank {W.ndim - 2})")
    d = to_dyn(X)
    if d.rank != 3:
        raise OnnxConversionError(f"Conv input has rank {d.rank}, expected 3 (N, C, L)")
    if not d.is_feature_axis(2) or "F" in d.axes[0]:
        y = pointwise_conv(ctx, node, d, W, Bc, a)
        if y is not None:
            return [OnnxValue(y)]
    if "F" in d.axes[0]:
        raise AxisError(f"Conv input {d.describe()}: its first (batch) axis holds features")
    for k in (1, 2):
        if not d.is_feature_axis(k):
            raise AxisError(f"Conv over axis {k} of {d.describe()}, which holds time/batch: a "
                            "convolution across time steps is not per-step")
    M, Cg, K = W.shape
    C, L = d.fshape[1], d.fshape[2]
    groups = int(a.get("group", 1))
    stride = int(a.get("strides", [1])[0])
    dil = int(a.get("dilations", [1])[0])
    ks = a.get("kernel_shape")
    if ks is not None and int(ks[0]) != K:
        raise OnnxConversionError("Conv kernel_shape disagrees with the weights")
    auto = a.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out_len = -(-L // stride)
        total = max((out_len - 1) * stride + (K - 1) * dil + 1 - L, 0)
        pl = total // 2 if auto == "SAME_UPPER" else total - total // 2
        pr = total - pl
    elif auto == "VALID":
        pl = pr = 0
    else:
        pads = a.get("pads", [0, 0])
        pl, pr = int(pads[0]), int(pads[1])
    if Cg * groups != C:
        raise OnnxConversionError(f"Conv weights expect {Cg * groups} channels, input has {C}")
    xm = ctx.as_data(d)
    bias = None if Bc is None else np.asarray(Bc, np.float32)
    v = ctx.emit("Conv1d", node.name or "conv", [xm.ref],
                 {"in_channels": C, "in_length": L, "out_channels": M, "kernel_size": K,
                  "stride": stride, "dilation": dil, "pad_left": pl, "pad_right": pr, "groups": groups},
                 {"W": W, "bias": bias})
    n = ctx.size(v)
    lout = n // M
    idx = np.arange(n, dtype=np.int64).reshape(M, lout)
    axes = [d.axes[0], ("F",) if M > 1 else (), ("F",) if lout > 1 else ()]
    return [OnnxValue(Dyn("data", v, idx[None], axes, ctx.mixed_readout(xm, n, "Conv")))]


def pointwise_conv(ctx, node, d: Dyn, W: np.ndarray, Bc, a) -> Dyn | None:
    """A Conv whose kernel covers one position (kernel 1, stride 1, no padding) mixes only
    channels: at every position along its length axis, y[:, t] = W x[:, t] + b, a Linear
    over the channel axis. So it is per-step even when the length axis holds time (a
    head `Conv1d(k=1)` after a recurrent layer, as in silero-vad) or batch: convert it as
    one. Returns None when the Conv is not of that form (the caller explains why not)."""
    M, Cg, K = W.shape
    groups = int(a.get("group", 1))
    strides = [int(s) for s in a.get("strides", [1])]
    pads = [int(p) for p in a.get("pads", [0, 0])]
    auto = a.get("auto_pad", "NOTSET")
    if K != 1 or any(s != 1 for s in strides) or (auto == "NOTSET" and any(pads)):
        return None
    if not d.is_feature_axis(1) or Cg * groups != d.fshape[1] or M % groups:
        return None
    mg = M // groups
    dense = np.zeros((Cg * groups, M), np.float64)   # (in, out), block-diagonal over groups
    for g in range(groups):
        dense[g * Cg:(g + 1) * Cg, g * mg:(g + 1) * mg] = W[g * mg:(g + 1) * mg, :, 0].T
    bias = None if Bc is None else np.asarray(Bc, np.float32)
    return contract(ctx, node, d, 1, dense, bias)
