"""Pooling over whole images: windowed max/average (ONNX MaxPool/AveragePool, floor mode)
and global pooling to one value per channel (GlobalAveragePool/GlobalMaxPool)."""
from __future__ import annotations

import numpy as np

from ..errors import SpecError
from ..ops.base import boolean, choice, integer
from .base import PreludeOpDef, Shape, pad_image, pads, pair, windowed

_KINDS = ("max", "avg")


def _pool_spec(attrs: dict, ins: list[Shape]):
    choice(attrs, "kind", _KINDS, "pool kind")
    boolean(attrs, "count_include_pad")
    C = integer(attrs, "channels", 1, 65536)
    kh, kw = pair(attrs, "kernel_size")
    sh, sw = pair(attrs, "stride", default=[1, 1])
    pt, pl, pb, pr = pads(attrs)
    x = ins[0]
    if x.c != C:
        raise SpecError(f"input has {x.c} channels, the pool declares {C}")
    return Shape(C, windowed(x.h, kh, sh, pt, pb, 1, "height"),
                 windowed(x.w, kw, sw, pl, pr, 1, "width")), {}


def pool2d(attrs: dict, weights: dict, ins: list[np.ndarray]) -> np.ndarray:
    kh, kw = attrs["kernel_size"]
    sh, sw = attrs.get("stride", [1, 1])
    p = pads(attrs)
    is_max = attrs["kind"] == "max"
    x = pad_image(ins[0], p, -np.inf if is_max else 0.0)
    B, C, Hp, Wp = x.shape
    Ho, Wo = (Hp - kh) // sh + 1, (Wp - kw) // sw + 1
    y = None
    for i in range(kh):
        for j in range(kw):
            view = x[:, :, i:i + sh * (Ho - 1) + 1:sh, j:j + sw * (Wo - 1) + 1:sw]
            if y is None:
                y = view.copy()
            elif is_max:
                np.maximum(y, view, out=y)
            else:
                y += view
    if is_max:
        return y
    if attrs.get("count_include_pad", False) or not any(p):
        return y / np.float32(kh * kw)
    # ONNX's default: divide by the number of pixels inside the image (pooled ones mask)
    ones = np.ones((1, 1, Hp - p[0] - p[2], Wp - p[1] - p[3]), np.float32)
    inside = pool2d({**attrs, "kind": "avg", "count_include_pad": True}, {}, [ones])
    return y / (inside * np.float32(kh * kw))


def _global_spec(attrs: dict, ins: list[Shape]):
    choice(attrs, "kind", _KINDS, "pool kind")
    return Shape(ins[0].c, 1, 1), {}


def global_pool2d(attrs: dict, weights: dict, ins: list[np.ndarray]) -> np.ndarray:
    x = ins[0]
    if attrs["kind"] == "max":
        return x.max(axis=(2, 3), keepdims=True)
    return x.mean(axis=(2, 3), keepdims=True, dtype=np.float32)


OPS = (PreludeOpDef("Pool2d", _pool_spec, pool2d),
       PreludeOpDef("GlobalPool2d", _global_spec, global_pool2d))
