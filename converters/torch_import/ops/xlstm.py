"""The xLSTM stack op (`lstm_infer::xlstm_stack`, see ../xlstm_hook.py): an
xLSTMBlockStack of the `xlstm` package, emitted by class and weights (../xlstm_layers.py)."""
from __future__ import annotations

from ..xlstm_hook import stack_of
from ..xlstm_layers import block_stack
from .registry import op


@op("xlstm_stack")
def _xlstm_stack(ctx, tgt, a):
    """(B, S, d) batch-first through the stack's blocks, per step."""
    x = ctx.val(a["x"], "an xLSTMBlockStack")
    entry = stack_of(a["key"])
    if entry is None:
        ctx.fail("an xlstm_stack op outside convert_torch (export the module with convert_torch)")
    stack, path = entry
    if len(x.shape) != 3 or x.t is not None:
        ctx.fail(f"an xLSTMBlockStack takes (batch, time, features); got shape {x.shape}")
    ctx.bind(x.dims[0], "B")
    ctx.bind(x.dims[1], "T")
    ctx.need_last_feature(x, "an xLSTMBlockStack")
    ctx.set_T(x.shape[1])
    d = stack.config.embedding_dim
    if x.size != d:
        ctx.fail(f"an xLSTMBlockStack of embedding_dim {d} on {x.size} features")

    def emit(op_name, name, inputs, attrs, weights, size):
        return ctx.emit(op_name, name, inputs, attrs, weights, size,
                        memo=op_name not in ("MLSTM", "SLSTM"))

    return ctx.derive(x, block_stack(emit, stack, x.vid, path))
