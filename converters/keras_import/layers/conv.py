"""Keras Conv1D over time (channels_last: input (batch, time, channels)).

kernel_size 1 is a per-frame Linear. Keras's kernel (K, C/groups, F) at k=0 is the
IR's W (in/groups, out) as it is (no transpose; group g's output columns are the g-th
column block, as the IR's grouped Linear reads them). A causal convolution (padding
"causal", stride 1) with K > 1 is a History of K frames, `dilation_rate` apart, oldest
first, then a Linear with W = kernel reshaped (K*C, F): History's slot k holds
x[t - (K-1-k)*d], which Keras's causal padding multiplies by kernel[k]."""
from __future__ import annotations

from ..context import Context, Layer
from .activations import emit_activation
from .registry import layer


def _one(v) -> int:
    return int(v[0] if isinstance(v, (list, tuple)) else v)


@layer("Conv1D")
def _conv1d(ctx: Context, L: Layer, ins: list, per_frame: bool):
    x = ins[0]
    if per_frame or not x.time:
        ctx.fail("Conv1D over the features of one frame (inside TimeDistributed or without "
                 "a time axis) is not supported; Conv1D over time is")
    if L.get("data_format", "channels_last") != "channels_last":
        ctx.fail("data_format='channels_first' is not supported")
    if len(x.shape) != 1:
        ctx.fail(f"Conv1D on per-step tensors of shape {x.shape}")
    K = _one(L.get("kernel_size"))
    stride, dil = _one(L.get("strides", 1)), _one(L.get("dilation_rate", 1))
    groups = int(L.get("groups", 1) or 1)
    pad = L.get("padding", "valid")
    use_bias = bool(L.get("use_bias", True))
    ws = ctx.weights(L, 2 if use_bias else 1)
    kernel, bias = ws[0], (ws[1] if use_bias else None)
    C, F = x.size, kernel.shape[2]
    if kernel.shape != (K, C // groups, F):
        ctx.fail(f"kernel {kernel.shape} does not fit {C} channels")
    if stride != 1:
        ctx.fail(f"strides={stride}: only stride 1 keeps one output per time step")
    if K == 1:
        out = ctx.linear(x, kernel[0], bias, (F,), groups=groups)
    else:
        if pad != "causal":
            ctx.fail(f"kernel_size={K} with padding={pad!r} looks ahead in time or shortens "
                     "the sequence; supported: kernel_size 1, or padding='causal'")
        if groups != 1:
            ctx.fail("a causal Conv1D with groups > 1 is not supported")
        hist = ctx.emit("History", [x.vid], {"size": C, "frames": K, "dilation": dil},
                        suffix=".history")
        out = ctx.linear(x.derive(hist, (K * C,)), kernel.reshape(K * C, F), bias, (F,))
    return emit_activation(ctx, out, L.get("activation"))
