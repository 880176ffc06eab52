"""One small converter per ONNX op type, registered by name (like onnx2torch).

A converter is `fn(ctx, node, ins, attrs) -> list of outputs`: `ins` holds, per node
input, None (absent), a numpy array (a constant) or an `OnnxValue` (see onnx_graph). Nodes whose
inputs are all constants are folded before their converter is asked (onnx_fold), except
for the ops in SYMBOLIC, which build symbolic constants themselves.
"""
from __future__ import annotations

from typing import Callable

HANDLERS: dict[str, Callable] = {}
# Ops accepted only when every input is a constant (shape arithmetic, conditions of If).
FOLD_ONLY = {"Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Not", "And", "Or",
             "Xor", "Range", "Floor", "Ceil", "Round", "Sign", "Mod", "NonZero", "Tile", "ReduceProd",
             "ArgMax", "ArgMin", "TopK", "CumSum", "Trilu", "IsNaN", "IsInf", "EyeLike", "OneHot"}
# Ops whose converter runs even on constant inputs when those hold symbolic sizes.
SYMBOLIC = {"ConstantOfShape", "Expand", "Shape", "Size", "If", "Constant"}


def op(*names: str):
    def deco(fn):
        for n in names:
            HANDLERS[n] = fn
        return fn
    return deco


def supported_ops() -> list[str]:
    """Ops converted on per-step data (every standard op also folds when all its inputs
    are constants; FOLD_ONLY lists the shape-arithmetic ones exported graphs use)."""
    return sorted(HANDLERS)


from . import control, elementwise, linear, norm, recurrent, shape  # noqa: E402,F401  (registration)
