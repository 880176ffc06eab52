"""Element-wise ops on whole images: activations, a per-channel affine map (folded
BatchNormalization and constant Add/Sub/Mul/Div) and binary ops of two images with
broadcasting over size-1 axes (squeeze-excitation's (C, 1, 1) gate times the image)."""
from __future__ import annotations

import numpy as np

from ..errors import SpecError
from ..ops.base import choice, integer, number
from .base import PreludeOpDef, Shape, Width

ACT_KINDS = ("identity", "relu", "sigmoid", "tanh", "hard_sigmoid", "hard_swish", "leaky_relu",
             "clip")
BINARY_KINDS = ("add", "sub", "mul", "div", "max", "min")


def _act_spec(attrs: dict, ins: list[Shape]):
    choice(attrs, "kind", ACT_KINDS, "activation kind")
    number(attrs, "alpha", 0.0)
    number(attrs, "beta", 0.0)
    return ins[0], {}


def activation(attrs: dict, weights: dict, ins: list[np.ndarray]) -> np.ndarray:
    """ONNX formulas: hard_sigmoid max(0, min(1, a*x+b)), hard_swish x*max(0, min(1, x/6+1/2)),
    leaky_relu (slope a), clip [a, b]."""
    x, kind = ins[0], attrs["kind"]
    a, b = np.float32(attrs.get("alpha", 0.0)), np.float32(attrs.get("beta", 0.0))
    if kind == "identity":
        return x
    if kind == "relu":
        return np.maximum(x, np.float32(0))
    if kind == "sigmoid":
        return (np.float32(1) / (np.float32(1) + np.exp(-x))).astype(np.float32)
    if kind == "tanh":
        return np.tanh(x)
    if kind == "hard_sigmoid":
        return np.clip(a * x + b, np.float32(0), np.float32(1))
    if kind == "hard_swish":
        return x * np.clip(x / np.float32(6) + np.float32(0.5), np.float32(0), np.float32(1))
    if kind == "leaky_relu":
        return np.where(x >= 0, x, a * x)
    return np.clip(x, a, b)


def _affine_spec(attrs: dict, ins: list[Shape]):
    C = integer(attrs, "channels", 1, 65536)
    if ins[0].c != C:
        raise SpecError(f"input has {ins[0].c} channels, the op declares {C}")
    return ins[0], {"scale": ((C,), False), "shift": ((C,), False)}


def channel_affine(attrs: dict, weights: dict, ins: list[np.ndarray]) -> np.ndarray:
    """y[:, c] = x[:, c] * scale[c] + shift[c]."""
    y = ins[0]
    if "scale" in weights:
        y = y * weights["scale"][None, :, None, None]
    if "shift" in weights:
        y = y + weights["shift"][None, :, None, None]
    return y


def _broadcast(p, q, what: str):
    if p == q or q == 1:
        return p
    if p == 1:
        return q
    shown = ["W" if isinstance(v, Width) else v for v in (p, q)]
    raise SpecError(f"{what} sizes {shown[0]} and {shown[1]} do not broadcast")


def _binary_spec(attrs: dict, ins: list[Shape]):
    choice(attrs, "kind", BINARY_KINDS, "binary kind")
    a, b = ins
    return Shape(_broadcast(a.c, b.c, "channel"), _broadcast(a.h, b.h, "height"),
                 _broadcast(a.w, b.w, "width")), {}


_NUMPY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
          "max": np.maximum, "min": np.minimum}


def binary(attrs: dict, weights: dict, ins: list[np.ndarray]) -> np.ndarray:
    return _NUMPY[attrs["kind"]](ins[0], ins[1])


OPS = (PreludeOpDef("Act2d", _act_spec, activation),
       PreludeOpDef("ChannelAffine2d", _affine_spec, channel_affine),
       PreludeOpDef("Binary2d", _binary_spec, binary, arity=2))
