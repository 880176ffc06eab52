"""One small converter per ONNX op type, registered by name (like onnx2torch).

A converter is `fn(ctx, node, ins, attrs) -> list of outputs`: `ins` holds, per node
input, None (absent), a numpy array (a constant) or an `OnnxValue` (see onnx_graph). Nodes
whose inputs are all constants are folded before their converter is asked (onnx_fold),
except for the ops in SYMBOLIC, which build symbolic constants themselves.

Adding an op: write the converter in the module of its family (or a new module listed
below) and decorate it with `@op("OpType")` from `.registry`.
"""
from __future__ import annotations

from . import (attention, control, conv2d, einsum, elementwise, embedding, linear, norm,  # noqa: F401
               quantized, recurrent, shape, sizes)  # registration
from .registry import FOLD_ONLY, HANDLERS, SYMBOLIC, op, supported_ops

__all__ = ["HANDLERS", "FOLD_ONLY", "SYMBOLIC", "op", "supported_ops"]
