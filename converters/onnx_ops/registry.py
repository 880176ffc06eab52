"""The registry of ONNX op converters (onnx2torch style): `@op("Relu", ...)` puts a
converter in HANDLERS under each op type. Kept apart from the package `__init__`, which
imports every converter module to fill it, so that those modules import this one and not
their package back (no import cycle)."""
from __future__ import annotations

from typing import Callable

HANDLERS: dict[str, Callable] = {}
# Ops accepted only when every input is a constant (shape arithmetic, conditions of If).
FOLD_ONLY = {"Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Not", "And", "Or",
             "Xor", "Range", "Floor", "Ceil", "Round", "Sign", "Mod", "NonZero", "ReduceProd",
             "ArgMax", "ArgMin", "TopK", "CumSum", "Trilu", "IsNaN", "IsInf", "EyeLike", "OneHot"}
# Ops whose converter runs even on constant inputs when those hold symbolic sizes.
SYMBOLIC = {"ConstantOfShape", "Expand", "Tile", "Shape", "Size", "If", "Constant"}


def op(*names: str) -> Callable[[Callable], Callable]:
    """Register the decorated converter for each ONNX op type in `names`."""
    def deco(fn):
        for n in names:
            HANDLERS[n] = fn
        return fn
    return deco


def supported_ops() -> list[str]:
    """Ops converted on per-step data (every standard op also folds when all its inputs
    are constants; FOLD_ONLY lists the shape-arithmetic ones exported graphs use)."""
    return sorted(HANDLERS)
