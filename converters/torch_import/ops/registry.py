"""The registry of PyTorch op converters (onnx2torch style, like `onnx_ops.registry`):
`@op("relu", ...)` puts a converter in HANDLERS under each aten op name (the overload
packet's name, `aten.relu.default` -> "relu"; a trailing "_" of in-place ops is dropped
before the look-up). Kept apart from the package `__init__` so that converter modules
import this one, not their package (no import cycle)."""
from __future__ import annotations

from typing import Callable

# A converter is fn(ctx: Context, target: OpOverload, args: dict) -> the FX node's value.
HANDLERS: dict[str, Callable] = {}


def op(*names: str) -> Callable[[Callable], Callable]:
    """Register the decorated converter for each aten op name in `names`."""
    def deco(fn):
        for n in names:
            HANDLERS[n] = fn
        return fn
    return deco
