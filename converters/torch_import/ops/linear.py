"""Linear maps with constant weights: nn.Linear (aten.linear), x @ W (matmul, mm) and
bias + x @ W (addmm), each one IR `Linear`."""
from __future__ import annotations

import numpy as np

from ...layout import linear_weight
from ..context import Context
from ..fx import is_tensor, to_numpy
from ..values import TorchValue
from .registry import op
from .time_pool import SOFTMAX, pending, weights_matmul


@op("linear")
def _linear(ctx: Context, tgt, a):
    x = ctx.val(a["input"], "linear")
    w, b = a["weight"], a["bias"]
    if not is_tensor(w) or (b is not None and not is_tensor(b)):
        ctx.fail("linear with weights computed from the input")
    return ctx.linear(x, linear_weight(to_numpy(w)), None if b is None else to_numpy(b),
                      ctx.node_name())


@op("matmul", "mm")
def _matmul(ctx: Context, tgt, a):
    x, w = a["self"], a["other"]
    if pending(x) and x.vid.startswith(SOFTMAX):
        return weights_matmul(ctx, x, w)
    if not isinstance(x, TorchValue) or not is_tensor(w) or w.dim() != 2:
        ctx.fail("matmul is supported only as per-step value @ constant matrix")
    return ctx.linear(x, to_numpy(w), None, ctx.node_name())  # x @ W: W is already (in, out)


@op("addmm")
def _addmm(ctx: Context, tgt, a):
    b, x, w = a["self"], a["mat1"], a["mat2"]
    if a.get("beta", 1) != 1 or a.get("alpha", 1) != 1 or not isinstance(x, TorchValue) \
            or not is_tensor(w) or not is_tensor(b):
        ctx.fail("addmm is supported only as bias + value @ constant matrix")
    bias = to_numpy(b).reshape(-1)
    if bias.size not in (1, w.shape[1]):
        ctx.fail(f"addmm bias of shape {tuple(b.shape)}")
    return ctx.linear(x, to_numpy(w), np.broadcast_to(bias, (w.shape[1],)).copy(), ctx.node_name())
