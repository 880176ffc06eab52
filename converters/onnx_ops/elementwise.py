"""Element-wise ops: activations, arithmetic with constants (one `Scale`) or between two
per-step tensors (`Binary`, broadcast by an IR Gather where needed), Clip, Pow, Where."""
from __future__ import annotations

import numpy as np

from ..onnx_graph import OnnxConversionError, OnnxValue
from ..onnx_sym import Dyn, broadcast_axes
from .attention_pool import SOFTMAX, is_pending, weighted
from .common import const_dyn, is_val, scalar, to_dyn
from .registry import op

F32_MAX = float(np.finfo(np.float32).max)


def unary(ctx, node, x, kind: str, **params) -> OnnxValue:
    d = to_dyn(x)
    if d.kind == "const":
        raise OnnxConversionError(f"{node.op_type} of a constant that depends on the sequence "
                                  "length/batch size is not supported")
    if (d.idx < 0).any():
        d = ctx.mat(d)
    attrs = {"kind": kind, "size": ctx.size(d.ref)}
    attrs.update({k: float(v) for k, v in params.items() if v is not None})
    v = ctx.emit("Activation", node.name or node.op_type.lower(), [d.ref], attrs)
    return OnnxValue(Dyn("data", v, d.idx, d.axes, d.readout))


def affine(ctx, node, x: Dyn, scale=None, shift=None) -> Dyn:
    """y = x * scale + shift with constant (broadcastable) scale/shift: one Scale op."""
    cs = [const_dyn(c) for c in (scale, shift) if c is not None]
    axes, fs = x.axes, x.fshape
    for c in cs:
        axes, fs = broadcast_axes(axes, fs, c.axes, c.fshape)
    vecs = []
    for c in (scale, shift):
        vecs.append(None if c is None else ctx.mat(const_dyn(c), axes, fs).ref.astype(np.float32))
    uniform = all(v is None or np.all(v == v.reshape(-1)[0]) for v in vecs)
    if uniform and tuple(fs) == x.fshape and not (shift is not None and (x.idx < 0).any()):
        n = ctx.size(x.ref)
        w = {"scale": None if vecs[0] is None else np.full(n, vecs[0].reshape(-1)[0], np.float32),
             "shift": None if vecs[1] is None else np.full(n, vecs[1].reshape(-1)[0], np.float32)}
        v = ctx.emit("Scale", node.name or node.op_type.lower(), [x.ref], {"size": n}, w)
        return Dyn("data", v, x.idx, x.axes, x.readout)
    m = ctx.mat(x, axes, fs)
    n = ctx.size(m.ref)
    v = ctx.emit("Scale", node.name or node.op_type.lower(), [m.ref], {"size": n},
                 {"scale": vecs[0], "shift": vecs[1]})
    return Dyn("data", v, m.idx, m.axes, m.readout)


def _binary_ir(ctx, node, a: Dyn, b: Dyn, kind: str) -> Dyn:
    axes, fs = broadcast_axes(a.axes, a.fshape, b.axes, b.fshape)
    am, bm = ctx.as_data(a, axes, fs), ctx.as_data(b, axes, fs)
    seq = (a.kind == "data" and a.readout is None) or (b.kind == "data" and b.readout is None)
    ra = am.readout if a.kind == "data" else (None if seq else np.zeros(am.idx.size, np.int64))
    rb = bm.readout if b.kind == "data" else (None if seq else np.zeros(bm.idx.size, np.int64))
    readout = ctx.pair_readout(ra, rb, node.op_type)
    v = ctx.emit("Binary", node.name or node.op_type.lower(), [am.ref, bm.ref],
                 {"kind": kind, "size": int(am.idx.size)})
    return Dyn("data", v, am.idx, axes, readout)


def _const_array(ctx, c) -> np.ndarray:
    """A constant operand as a numpy array (symbolic broadcast axes become size 1)."""
    if is_val(c):
        d = c.need()
        return np.asarray(ctx.mat(d).ref, np.float64).reshape(d.fshape)
    return np.asarray(c, np.float64)


def binary(ctx, node, x, y, kind: str) -> OnnxValue:
    """kind: add sub mul div pow max min, with x/y constants or per-step tensors."""
    if kind == "mul" and (is_pending(x, SOFTMAX) or is_pending(y, SOFTMAX)):
        return weighted(ctx, node, x, y) if is_pending(x, SOFTMAX) else weighted(ctx, node, y, x)
    a, b = to_dyn(x), to_dyn(y)
    if a.kind == "const" and b.kind == "const":
        axes, fs = broadcast_axes(a.axes, a.fshape, b.axes, b.fshape)
        av, bv = ctx.mat(a, axes, fs).ref, ctx.mat(b, axes, fs).ref
        fn = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
              "pow": np.power, "max": np.maximum, "min": np.minimum}[kind]
        out = fn(av, bv)
        return OnnxValue(Dyn("const", np.asarray(out), np.arange(out.size).reshape(fs), axes))
    if a.kind == "data" and b.kind == "data":
        return OnnxValue(_binary_ir(ctx, node, a, b, kind))
    const_left = a.kind == "const"
    xd = b if const_left else a
    carr = _const_array(ctx, x if const_left else y)
    if kind == "add":
        return OnnxValue(affine(ctx, node, xd, shift=carr))
    if kind == "sub":
        return OnnxValue(affine(ctx, node, xd, scale=-np.ones_like(carr) if const_left else None,
                          shift=carr if const_left else -carr))
    if kind == "mul":
        return OnnxValue(affine(ctx, node, xd, scale=carr))
    if kind == "div" and not const_left:
        return OnnxValue(affine(ctx, node, xd, scale=1.0 / carr))
    cd = const_dyn(carr.astype(np.float32))
    if kind == "pow" and not const_left and carr.size and np.all(carr == carr.reshape(-1)[0]):
        e = float(carr.reshape(-1)[0])
        if broadcast_axes(xd.axes, xd.fshape, cd.axes, cd.fshape)[1] == xd.fshape:
            if e == 1.0:
                return OnnxValue(xd)
            if e == 2.0:
                return OnnxValue(_binary_ir(ctx, node, xd, xd, "mul"))
            if e == 0.5:
                return unary(ctx, node, OnnxValue(xd), "sqrt")
            if e == -1.0:
                return unary(ctx, node, OnnxValue(xd), "reciprocal")
            return unary(ctx, node, OnnxValue(xd), "pow", alpha=e)
    return OnnxValue(_binary_ir(ctx, node, cd, xd, kind) if const_left
                     else _binary_ir(ctx, node, xd, cd, kind))


for _name, _kind in (("Add", "add"), ("Sub", "sub"), ("Mul", "mul"), ("Div", "div"), ("Pow", "pow")):
    op(_name)(lambda ctx, node, ins, a, _k=_kind: [binary(ctx, node, ins[0], ins[1], _k)])


@op("Max", "Min", "Sum")
def _variadic(ctx, node, ins, a):
    kind = {"Max": "max", "Min": "min", "Sum": "add"}[node.op_type]
    acc = ins[0]
    for x in ins[1:]:
        acc = binary(ctx, node, acc, x, kind)
    return [acc]


_SIMPLE = {"Relu": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "Exp": "exp", "Log": "log",
           "Sqrt": "sqrt", "Neg": "neg", "Abs": "abs", "Reciprocal": "reciprocal", "Erf": "erf",
           "Softplus": "softplus", "Softsign": "softsign"}


@op(*_SIMPLE)
def _simple(ctx, node, ins, a):
    return [unary(ctx, node, ins[0], _SIMPLE[node.op_type])]


@op("LeakyRelu")
def _leaky(ctx, node, ins, a):
    return [unary(ctx, node, ins[0], "leaky_relu", alpha=a.get("alpha", 0.01))]


@op("Elu")
def _elu(ctx, node, ins, a):
    return [unary(ctx, node, ins[0], "elu", alpha=a.get("alpha", 1.0))]


@op("Selu")
def _selu(ctx, node, ins, a):
    y = unary(ctx, node, ins[0], "elu", alpha=a.get("alpha", 1.67326319217681884765625))
    return [OnnxValue(affine(ctx, node, y.data, scale=np.float64(a.get("gamma", 1.05070102214813232421875))))]


@op("ThresholdedRelu")
def _thresholded(ctx, node, ins, a):
    return [unary(ctx, node, ins[0], "thresholded_relu", alpha=a.get("alpha", 1.0))]


@op("HardSigmoid")
def _hard_sigmoid(ctx, node, ins, a):
    return [unary(ctx, node, ins[0], "hard_sigmoid", alpha=a.get("alpha", 0.2), beta=a.get("beta", 0.5))]


@op("HardSwish")
def _hard_swish(ctx, node, ins, a):
    hs = unary(ctx, node, ins[0], "hard_sigmoid", alpha=1.0 / 6.0, beta=0.5)
    return [OnnxValue(_binary_ir(ctx, node, to_dyn(ins[0]), hs.data, "mul"))]


@op("Gelu")
def _gelu(ctx, node, ins, a):
    approx = a.get("approximate", "none")
    return [unary(ctx, node, ins[0], "gelu_tanh" if approx == "tanh" else "gelu")]


@op("Clip")
def _clip(ctx, node, ins, a):
    if ctx.opset < 11:
        lo, hi = a.get("min", -F32_MAX), a.get("max", F32_MAX)
    else:
        lo = scalar(ins[1], "Clip min") if len(ins) > 1 and ins[1] is not None else -F32_MAX
        hi = scalar(ins[2], "Clip max") if len(ins) > 2 and ins[2] is not None else F32_MAX
    lo, hi = max(float(lo), -F32_MAX), min(float(hi), F32_MAX)
    return [unary(ctx, node, ins[0], "clip", alpha=lo, beta=hi)]


@op("Where")
def _where(ctx, node, ins, a):
    cond, x, y = ins
    if is_val(cond):
        raise OnnxConversionError("Where with a condition computed from the input is not supported "
                                  "(only constant conditions)")
    c = const_dyn(np.asarray(cond).astype(bool))
    dx, dy = to_dyn(x), to_dyn(y)
    axes, fs = broadcast_axes(dx.axes, dx.fshape, dy.axes, dy.fshape)
    axes, fs = broadcast_axes(axes, fs, c.axes, c.fshape)
    cm = ctx.mat(c, axes, fs).ref.reshape(fs).astype(bool)
    if dx.kind == "const" and dy.kind == "const":
        xv, yv = ctx.mat(dx, axes, fs).ref, ctx.mat(dy, axes, fs).ref
        out = np.where(cm.reshape(-1), xv, yv)
        return [OnnxValue(Dyn("const", out, np.arange(out.size).reshape(fs), axes))]
    xm, ym = ctx.as_data(dx, axes, fs), ctx.as_data(dy, axes, fs)
    seq = (dx.kind == "data" and dx.readout is None) or (dy.kind == "data" and dy.readout is None)
    rx = None if (seq and dx.kind == "const") else xm.readout
    ry = None if (seq and dy.kind == "const") else ym.readout
    if seq:
        ctx.pair_readout(rx if rx is not None else None, ry, "Where")
    if xm.ref == ym.ref:
        idx = np.where(cm, xm.idx, ym.idx)
        return [OnnxValue(Dyn("data", xm.ref, idx, axes, None if seq else xm.readout))]
    nx = ctx.size(xm.ref)
    v = ctx.emit("Concat", node.name or "where", [xm.ref, ym.ref], {"sizes": [nx, ctx.size(ym.ref)]})
    idx = np.where(cm, xm.idx, ym.idx + nx)
    readout = None if seq else np.concatenate([xm.readout, ym.readout])
    return [OnnxValue(Dyn("data", v, idx, axes, readout))]
