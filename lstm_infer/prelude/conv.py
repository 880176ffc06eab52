"""Conv2d over whole images: im2col + one float32 matmul (numpy's BLAS), depthwise as a
sum of shifted slices. run() only, so no Numba: the matmul is already BLAS and the image
is seen once per call."""
from __future__ import annotations

import numpy as np

from ..errors import SpecError
from ..ops.base import integer
from .base import PreludeOpDef, Shape, check_volume, pad_image, pads, pair, windowed


def _spec(attrs: dict, ins: list[Shape]):
    C = integer(attrs, "in_channels", 1, 65536)
    M = integer(attrs, "out_channels", 1, 65536)
    g = integer(attrs, "groups", 1, 65536, default=1)
    kh, kw = pair(attrs, "kernel_size")
    sh, sw = pair(attrs, "stride", default=[1, 1])
    dh, dw = pair(attrs, "dilation", default=[1, 1])
    pt, pl, pb, pr = pads(attrs)
    if C % g or M % g:
        raise SpecError(f"groups {g} must divide in_channels {C} and out_channels {M}")
    x = ins[0]
    if x.c != C:
        raise SpecError(f"input has {x.c} channels, in_channels is {C}")
    out = Shape(M, windowed(x.h, kh, sh, pt, pb, dh, "height"),
                windowed(x.w, kw, sw, pl, pr, dw, "width"))
    return check_volume(out), {"W": ((M, C // g, kh, kw), True), "bias": ((M,), False)}


def _taps(xp: np.ndarray, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, Ho: int, Wo: int):
    """(i, j, view): the input under kernel tap (i, j) for every output position."""
    for i in range(kh):
        for j in range(kw):
            yield i, j, xp[:, :, i * dh:i * dh + sh * (Ho - 1) + 1:sh,
                           j * dw:j * dw + sw * (Wo - 1) + 1:sw]


def conv2d(attrs: dict, weights: dict, ins: list[np.ndarray]) -> np.ndarray:
    """ONNX Conv (NCHW, pads top/left/bottom/right, groups, dilations) in float32."""
    W = weights["W"]
    M, Cg, kh, kw = W.shape
    g = attrs.get("groups", 1)
    sh, sw = attrs.get("stride", [1, 1])
    dh, dw = attrs.get("dilation", [1, 1])
    x = pad_image(ins[0], pads(attrs), 0.0)
    B, C, Hp, Wp = x.shape
    Ho = (Hp - dh * (kh - 1) - 1) // sh + 1
    Wo = (Wp - dw * (kw - 1) - 1) // sw + 1
    if g == 1 and kh == kw == 1 and sh == sw == 1:
        # pointwise: one (M, C) @ (B, C, H*W) matmul, no copy of the input
        y = np.matmul(W.reshape(M, C), x.reshape(B, C, Hp * Wp)).reshape(B, M, Ho, Wo)
    elif g == C and Cg == 1:
        # depthwise: each tap is one multiply-add over the whole tensor (k*k passes beat
        # an im2col copy of k*k times the input for 3x3/5x5 kernels; and a Numba loop:
        # 0.96 vs 2.8 ms for 64 channels 16x160 3x3, 1.6 vs 2.9 ms for 256 channels 4x80 5x5)
        mult = M // C
        xs = np.repeat(x, mult, axis=1) if mult > 1 else x
        y = np.zeros((B, M, Ho, Wo), np.float32)
        for i, j, view in _taps(xs, kh, kw, sh, sw, dh, dw, Ho, Wo):
            y += W[:, 0, i, j][None, :, None, None] * view
    else:
        y = np.empty((B, M, Ho, Wo), np.float32)
        Mg = M // g
        for k in range(g):
            xg = x[:, k * Cg:(k + 1) * Cg]
            cols = np.empty((B, Cg, kh, kw, Ho, Wo), np.float32)
            for i, j, view in _taps(xg, kh, kw, sh, sw, dh, dw, Ho, Wo):
                cols[:, :, i, j] = view
            wk = W[k * Mg:(k + 1) * Mg].reshape(Mg, Cg * kh * kw)
            y[:, k * Mg:(k + 1) * Mg] = np.matmul(wk, cols.reshape(B, Cg * kh * kw, Ho * Wo)
                                                  ).reshape(B, Mg, Ho, Wo)
    if "bias" in weights:
        y += weights["bias"][None, :, None, None]
    return y


OPS = (PreludeOpDef("Conv2d", _spec, conv2d),)
