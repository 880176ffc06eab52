"""Element-wise activations and softmax over the features, each an IR `Activation` (SiLU:
a sigmoid and a `Mul`)."""
from __future__ import annotations

from ..context import Context
from ..fx import torch_module
from .registry import op
from .time_pool import softmax_over_time


def _act(ctx: Context, a, kind, alpha=None):
    return ctx.activation(ctx.val(a["self"], kind), kind, alpha)


@op("relu")
def _relu(ctx: Context, tgt, a):
    return _act(ctx, a, "relu")


@op("tanh")
def _tanh(ctx: Context, tgt, a):
    return _act(ctx, a, "tanh")


@op("sigmoid")
def _sigmoid(ctx: Context, tgt, a):
    return _act(ctx, a, "sigmoid")


@op("gelu")
def _gelu(ctx: Context, tgt, a):
    approx = a.get("approximate", "none")
    if approx not in ("none", "tanh"):
        ctx.fail(f"gelu approximate={approx!r}")
    return _act(ctx, a, "gelu" if approx == "none" else "gelu_tanh")


@op("leaky_relu")
def _leaky_relu(ctx: Context, tgt, a):
    return _act(ctx, a, "leaky_relu", float(a.get("negative_slope", 0.01)))


@op("elu")
def _elu(ctx: Context, tgt, a):
    if float(a.get("scale", 1)) != 1.0 or float(a.get("input_scale", 1)) != 1.0:
        ctx.fail("elu with scale/input_scale (SELU/CELU) is not supported")
    return _act(ctx, a, "elu", float(a.get("alpha", 1.0)))


@op("softplus")
def _softplus(ctx: Context, tgt, a):
    if float(a.get("beta", 1)) != 1.0 or float(a.get("threshold", 20)) != 20.0:
        ctx.fail("softplus is supported with beta=1, threshold=20 only")
    return _act(ctx, a, "softplus")


@op("silu")
def _silu(ctx: Context, tgt, a):
    x = ctx.val(a["self"], "silu")
    s = ctx.activation(x, "sigmoid", name=ctx.node_name(".sigmoid"))
    vid = ctx.emit("Mul", ctx.node_name(), [x.vid, s.vid], {"size": x.size}, {}, x.size)
    return ctx.derive(x, vid)


def _softmax(ctx: Context, a, kind):
    x = ctx.val(a["self"], kind)
    dim = a["dim"] % len(x.shape)
    if kind == "softmax" and (dim != len(x.shape) - 1 or ctx.res(x.dims[dim]) == "T"):
        held = softmax_over_time(ctx, x, dim)
        if held is not None:
            return held
    if dim != len(x.shape) - 1:
        ctx.fail(f"{kind} over dim {a['dim']}: only the last (feature) dim is supported")
    if a.get("dtype") not in (None, torch_module().float32):
        ctx.fail(f"{kind} with dtype {a.get('dtype')}")
    ctx.need_last_feature(x, kind)
    return ctx.activation(x, kind)


@op("softmax", "_softmax")
def _softmax_op(ctx: Context, tgt, a):
    return _softmax(ctx, a, "softmax")


@op("log_softmax", "_log_softmax")
def _log_softmax_op(ctx: Context, tgt, a):
    return _softmax(ctx, a, "log_softmax")
