"""Embedding lookups: Gather(table, ids) with a constant table and the graph's integer
token input as indices -> the runtime's `Embedding` op (lstm_infer/ops/embedding.py).

The token input reaches the engine as one float per id (`m.input_size` is the number of
ids per step, 1 for a [batch, time] input); the ids may be reshaped, transposed or cast
between the graph input and the Gather, which only changes which input element each
looked-up row belongs to. A table of integers (a quantized table dequantized after the
Gather, as onnxruntime's quantizer writes it) is stored as floats holding those
integers; the DequantizeLinear that follows becomes Scale ops that onnx_optimize folds
back into the table.
"""
from __future__ import annotations

import numpy as np

from ..layout import embedding_node
from ..onnx_fold import is_sym_array
from ..onnx_graph import OnnxConversionError, OnnxValue
from ..onnx_sym import Dyn, norm_axis
from .common import is_val


def is_token_ids(ctx, d: Dyn) -> bool:
    """`d` is (a rearrangement of) the graph's integer token input."""
    return ctx.int_input and d.kind == "data" and d.ref == ctx.input_name


def lookup(ctx, node, table, ids, axis: int) -> list:
    """Gather(table, ids) where the indices `ids` are an OnnxValue."""
    if is_val(table):
        raise OnnxConversionError("Gather of a per-step tensor at indices that come from the input "
                                  "is not supported (only an embedding lookup in a constant table)")
    d = ids.need()
    if not is_token_ids(ctx, d):
        raise OnnxConversionError(
            "Gather with indices computed from the input is not supported: only an embedding "
            "lookup, a constant table indexed by the graph's integer token input (reshaped, "
            "transposed or cast at most)")
    table = np.asarray(table)
    if is_sym_array(table) or table.dtype.kind not in "fiub" or table.ndim < 1:
        raise OnnxConversionError(f"embedding table of dtype {table.dtype} and shape {table.shape} "
                                  "is not a numeric constant")
    if norm_axis(axis, table.ndim) != 0:
        raise OnnxConversionError(f"Gather on axis {axis} of a constant {table.shape} at token ids: "
                                  "only axis 0 (the rows of an embedding table) is supported")
    if (d.idx < 0).any():
        raise OnnxConversionError("token ids padded inside the graph are not supported")
    V, rest = int(table.shape[0]), tuple(int(n) for n in table.shape[1:])
    D = int(np.prod(rest, dtype=np.int64))
    if V == 0 or D == 0:
        raise OnnxConversionError(f"embedding table of shape {table.shape} is empty")
    attrs, weights = embedding_node(table, ctx.size(ctx.input_name))
    v = ctx.emit("Embedding", node.name or "embedding", [ctx.input_name], attrs, weights)
    # row k of the output holds the id in input element k: positions follow the ids' layout
    idx = (d.idx[..., None] * D + np.arange(D, dtype=np.int64)).reshape(d.fshape + rest)
    axes = list(d.axes) + [("F",) if n > 1 else () for n in rest]
    readout = None if d.readout is None else np.repeat(d.readout, D)
    return [OnnxValue(Dyn("data", v, idx, axes, readout))]
