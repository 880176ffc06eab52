"""What a prelude op module provides (`PreludeOpDef`), and image shapes with a variable width.

A prelude op works on whole image tensors (B, C, H, W), once per run() call, before the
per-step graph. Heights and channels are fixed when the file is written; the width is the
image's (it becomes the time axis), so a value's width is either a fixed int or a `Width`:
the chain of windowed ops (convolutions, pools) applied to the input width. Validation
works on these symbols; run() evaluates them for the image at hand.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Union

import numpy as np

from ..errors import SpecError
from ..ops.base import MAX_SIZE, integer


@dataclass(frozen=True)
class Width:
    """The input width after windowed ops: each step maps w -> (w + add) // stride + 1."""
    steps: tuple[tuple[int, int], ...] = ()

    def then(self, add: int, stride: int) -> "Width":
        return Width(self.steps + ((add, stride),))

    def at(self, w: int) -> int:
        """The concrete width for an input of width w (< 1 when the image is too narrow)."""
        for add, stride in self.steps:
            if w + add < 0:
                return 0
            w = (w + add) // stride + 1
        return w


WidthLike = Union[int, Width]


@dataclass(frozen=True)
class Shape:
    """Per-sample shape (C, H, W) of a prelude value."""
    c: int
    h: int
    w: WidthLike

    def describe(self) -> str:
        return f"({self.c}, {self.h}, {'W' if isinstance(self.w, Width) else self.w})"


def windowed(n: WidthLike, kernel: int, stride: int, pad_lo: int, pad_hi: int,
             dilation: int, what: str) -> WidthLike:
    """Output size of a convolution/pool window along one axis (floor mode)."""
    add = pad_lo + pad_hi - dilation * (kernel - 1) - 1
    if isinstance(n, Width):
        return n.then(add, stride)
    if n + add < 0:
        raise SpecError(f"{what}: the window ({kernel}, dilation {dilation}) is larger than "
                        f"the padded input ({n} + {pad_lo + pad_hi})")
    return (n + add) // stride + 1


def pair(attrs: dict, key: str, lo: int = 1, hi: int = 1024, default: Any = None) -> tuple[int, int]:
    v = attrs.get(key, default)
    if not isinstance(v, list) or len(v) != 2:
        raise SpecError(f"attribute {key!r} must be a list of 2 integers, got {v!r}")
    return (integer({key: v[0]}, key, lo, hi), integer({key: v[1]}, key, lo, hi))


def pads(attrs: dict) -> tuple[int, int, int, int]:
    """ONNX order: top, left, bottom, right."""
    v = attrs.get("pads", [0, 0, 0, 0])
    if not isinstance(v, list) or len(v) != 4:
        raise SpecError(f"attribute 'pads' must be 4 integers (top, left, bottom, right), got {v!r}")
    return tuple(integer({"pads": p}, "pads", 0, 1024) for p in v)  # type: ignore[return-value]


def check_volume(s: Shape) -> Shape:
    """Fixed parts of a shape stay within the runtime's size limit."""
    integer({"size": s.c * s.h}, "size", 1, MAX_SIZE)
    return s


@dataclass(frozen=True)
class PreludeOpDef:
    """One whole-image op: `spec` checks attributes against input shapes and returns the
    output shape and the weights it takes (role -> (shape, required)); `run` computes it
    on float32 (B, C, H, W) arrays."""
    name: str
    spec: Callable[[dict, list[Shape]], tuple[Shape, dict[str, tuple[tuple[int, ...], bool]]]]
    run: Callable[[dict, dict[str, np.ndarray], list[np.ndarray]], np.ndarray]
    arity: int = 1


def pad_image(x: np.ndarray, p: tuple[int, int, int, int], value: float) -> np.ndarray:
    """Pad (B, C, H, W) by (top, left, bottom, right) with a constant."""
    t, l, b, r = p
    if not (t or l or b or r):
        return x
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=value)
