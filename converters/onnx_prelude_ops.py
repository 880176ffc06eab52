"""ONNX image ops -> prelude ops (lstm_infer/prelude), one converter per ONNX op.

Each converter gets the node, its inputs (an `Image` for values computed from the image,
a numpy array for constants) and attributes, and emits prelude nodes through
`PreludeBuilder`. What a prelude op cannot express raises OnnxConversionError naming the
node and the reason."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import OnnxConversionError

BIG = 3.0e38  # "no bound" for Clip, finite as the file's attrs must be


@dataclass(frozen=True)
class Image:
    """A value computed from the image: its prelude value name and channel count."""
    name: str
    channels: int


class PreludeBuilder:
    """Collects prelude nodes and their weights (tensor names `<node>.<role>`)."""

    def __init__(self):
        self.nodes: list[dict] = []
        self.tensors: dict[str, np.ndarray] = {}
        self._names: set[str] = set()

    def add(self, op: str, name: str, inputs: list[Image], output: str, channels: int,
            attrs: dict, weights: dict | None = None) -> Image:
        base, k = name or op, 1
        while name in self._names or not name:
            name, k = f"{base}_{k}", k + 1
        self._names.add(name)
        wmap = {}
        for role, arr in (weights or {}).items():
            if arr is not None:
                self.tensors[f"{name}.{role}"] = np.ascontiguousarray(arr, dtype=np.float32)
                wmap[role] = f"{name}.{role}"
        self.nodes.append({"name": name, "op": op, "inputs": [i.name for i in inputs],
                           "outputs": [output], "attrs": attrs, "weights": wmap})
        return Image(output, channels)


HANDLERS: dict[str, Callable] = {}


def _op(*names: str):
    def deco(fn):
        for n in names:
            HANDLERS[n] = fn
        return fn
    return deco


def _const(v, what: str) -> np.ndarray:
    if isinstance(v, Image):
        raise OnnxConversionError(f"{what} must be a constant (it depends on the image)")
    return np.asarray(v, np.float32)


def _per_channel(c: np.ndarray, C: int, what: str) -> np.ndarray:
    """A constant broadcast against (B, C, H, W) as C values, if it varies only by channel."""
    a = np.asarray(c, np.float32)
    if a.size == 1:
        return np.full(C, a.reshape(-1)[0], np.float32)
    shape = (1,) * (4 - a.ndim) + a.shape if a.ndim <= 4 else None
    if shape is None or shape[0] != 1 or shape[1] not in (1, C) or shape[2:] != (1, 1):
        raise OnnxConversionError(f"{what} of shape {a.shape} varies over more than the channels "
                                  f"of a (B, {C}, H, W) image")
    return np.broadcast_to(a.reshape(-1), (C,)).astype(np.float32)


def _window_attrs(node, a: dict) -> tuple[list, list, list]:
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise OnnxConversionError(f"auto_pad {a['auto_pad']!r} is not supported (explicit pads only)")
    k = list(a["kernel_shape"]) if "kernel_shape" in a else None
    s = list(a.get("strides", [1, 1]))
    p = list(a.get("pads", [0, 0, 0, 0]))
    if len(s) != 2 or len(p) != 4:
        raise OnnxConversionError("only 2-D windows (over height and width) are supported")
    return k, s, [p[0], p[1], p[2], p[3]]   # ONNX: top, left, bottom, right


@_op("Conv")
def _conv(pb, node, ins, a, out):
    x, W = ins[0], _const(ins[1], "Conv weight")
    bias = _const(ins[2], "Conv bias") if len(ins) > 2 and ins[2] is not None else None
    if not isinstance(x, Image) or W.ndim != 4:
        raise OnnxConversionError("only a 2-D Conv of the image by constant weights is supported")
    k, s, p = _window_attrs(node, a)
    d = list(a.get("dilations", [1, 1]))
    M, g = W.shape[0], int(a.get("group", 1))
    attrs = {"in_channels": x.channels, "out_channels": M, "groups": g,
             "kernel_size": [int(W.shape[2]), int(W.shape[3])], "stride": s, "dilation": d,
             "pads": p}
    return pb.add("Conv2d", node.name, [x], out, M, attrs, {"W": W, "bias": bias})


@_op("BatchNormalization")
def _batchnorm(pb, node, ins, a, out):
    x = ins[0]
    scale, bias, mean, var = (_const(v, "BatchNormalization parameter") for v in ins[1:5])
    C = x.channels
    for v, what in ((scale, "scale"), (bias, "B"), (mean, "mean"), (var, "var")):
        if v.shape != (C,):
            raise OnnxConversionError(f"BatchNormalization {what} has shape {v.shape}, expected ({C},)")
    mul = scale / np.sqrt(var + np.float32(a.get("epsilon", 1e-5)))
    shift = bias - mean * mul
    return _affine(pb, node, x, out, mul, shift)


def _affine(pb, node, x: Image, out: str, scale, shift) -> Image:
    return pb.add("ChannelAffine2d", node.name, [x], out, x.channels, {"channels": x.channels},
                  {"scale": scale, "shift": shift})


@_op("Add", "Sub", "Mul", "Div", "Max", "Min")
def _binary(pb, node, ins, a, out):
    kind = node.op_type.lower()
    if len(ins) != 2:
        raise OnnxConversionError(f"{node.op_type} of {len(ins)} inputs (2 supported)")
    p, q = ins
    if isinstance(p, Image) and isinstance(q, Image):
        C = max(p.channels, q.channels)
        return pb.add("Binary2d", node.name, [p, q], out, C, {"kind": kind})
    img, c, first = (p, q, True) if isinstance(p, Image) else (q, p, False)
    v = _per_channel(c, img.channels, f"the constant operand of {node.op_type}")
    ones = np.ones_like(v)
    if kind == "add":
        return _affine(pb, node, img, out, None, v)
    if kind == "mul":
        return _affine(pb, node, img, out, v, None)
    if kind == "sub":
        return _affine(pb, node, img, out, None if first else -ones, -v if first else v)
    if kind == "div" and first:
        return _affine(pb, node, img, out, ones / v, None)
    if kind in ("max", "min"):
        lo, hi = (v, None) if kind == "max" else (None, v)
        if np.all(v == v[0]):
            return _act(pb, node, img, out, "clip", -BIG if lo is None else float(v[0]),
                        BIG if hi is None else float(v[0]))
    raise OnnxConversionError(f"{node.op_type} with a constant {'first' if not first else 'second'} "
                              "operand of this form is not supported on images")


def _act(pb, node, x: Image, out: str, kind: str, alpha: float = 0.0, beta: float = 0.0) -> Image:
    return pb.add("Act2d", node.name, [x], out, x.channels,
                  {"kind": kind, "alpha": float(alpha), "beta": float(beta)})


@_op("Relu", "Sigmoid", "Tanh", "HardSwish", "Identity", "Dropout")
def _plain_act(pb, node, ins, a, out):
    kind = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "HardSwish": "hard_swish",
            "Identity": "identity", "Dropout": "identity"}[node.op_type]
    return _act(pb, node, ins[0], out, kind)


@_op("HardSigmoid")
def _hard_sigmoid(pb, node, ins, a, out):
    return _act(pb, node, ins[0], out, "hard_sigmoid", a.get("alpha", 0.2), a.get("beta", 0.5))


@_op("LeakyRelu")
def _leaky(pb, node, ins, a, out):
    return _act(pb, node, ins[0], out, "leaky_relu", a.get("alpha", 0.01))


@_op("Clip")
def _clip(pb, node, ins, a, out):
    lo, hi = a.get("min", -BIG), a.get("max", BIG)
    if len(ins) > 1 and ins[1] is not None:
        lo = float(_const(ins[1], "Clip min").reshape(-1)[0])
    if len(ins) > 2 and ins[2] is not None:
        hi = float(_const(ins[2], "Clip max").reshape(-1)[0])
    return _act(pb, node, ins[0], out, "clip", max(lo, -BIG), min(hi, BIG))


@_op("MaxPool", "AveragePool")
def _pool(pb, node, ins, a, out):
    x = ins[0]
    k, s, p = _window_attrs(node, a)
    if a.get("ceil_mode", 0) or any(v != 1 for v in a.get("dilations", [1, 1])):
        raise OnnxConversionError("pools with ceil_mode or dilations are not supported")
    if len(node.output) > 1 and node.output[1]:
        raise OnnxConversionError("MaxPool's Indices output is not supported")
    attrs = {"kind": "max" if node.op_type == "MaxPool" else "avg", "channels": x.channels,
             "kernel_size": k, "stride": s, "pads": p,
             "count_include_pad": bool(a.get("count_include_pad", 0))}
    return pb.add("Pool2d", node.name, [x], out, x.channels, attrs)


@_op("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(pb, node, ins, a, out):
    kind = "avg" if node.op_type == "GlobalAveragePool" else "max"
    return pb.add("GlobalPool2d", node.name, [ins[0]], out, ins[0].channels, {"kind": kind})
