"""Constant and If (resolved when its condition folds to a constant)."""
from __future__ import annotations

import numpy as np

from ..onnx_fold import is_sym_array, tensor_to_array, to_concrete
from ..onnx_graph import OnnxConversionError
from .common import is_val
from .registry import op


@op("Constant")
def _constant(ctx, node, ins, a):
    if "value" in a:
        return [tensor_to_array(a["value"])]
    for key, dt in (("value_float", np.float32), ("value_floats", np.float32),
                    ("value_int", np.int64), ("value_ints", np.int64)):
        if key in a:
            return [np.asarray(a[key], dtype=dt)]
    raise OnnxConversionError(f"Constant with attributes {sorted(a)} is not supported")


@op("If")
def _if(ctx, node, ins, a):
    cond = ins[0]
    if is_val(cond):
        raise OnnxConversionError("If whose condition depends on the input data cannot be resolved "
                                  "at conversion time")
    c = np.asarray(to_concrete(cond) if is_sym_array(np.asarray(cond)) else cond)
    if c.size != 1:
        raise OnnxConversionError("If condition is not a single value")
    branch = a["then_branch"] if bool(c.reshape(-1)[0]) else a["else_branch"]
    outs = ctx.walk_subgraph(branch)
    if len(outs) != len(node.output):
        raise OnnxConversionError("If branch returns a different number of outputs")
    return outs
