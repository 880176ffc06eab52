"""Keras ConvLSTM1D / ConvLSTM2D: one IR ConvLSTM node (lstm_infer/ops/conv_lstm.py).

Frames are channels_last, as the IR's: a 2-D layer's per-step shape (H, W, C), a 1-D
layer's (L, C), which the node reads as a frame of height 1. `kernel` (kh, kw, C, 4F) and
`recurrent_kernel` (kh, kw, F, 4F) are the IR's W_x and W_h as they are (Keras's gate
order i, f, c, o is the op's; a 1-D kernel (k, C, 4F) gains a leading axis of 1).
padding 'valid' is no padding; 'same' is TensorFlow's rule, which Keras follows on every
backend: total = max((ceil(n/s) - 1)*s + (k - 1)*d + 1 - n, 0), top/left = total // 2.
return_sequences / go_backwards / return_state / stateful behave as for LSTM
(layers/recurrent.py).
"""
from __future__ import annotations

import numpy as np

from ..context import Context, Layer
from ..values import KValue, Refused
from .activations import gate_activation
from .registry import layer


def _tuple(v, rank: int) -> tuple[int, ...]:
    v = v if isinstance(v, (list, tuple)) else [v] * rank
    return tuple(int(e) for e in v)


def same_pads(n: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding of one axis: (before, after)."""
    total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def _node(ctx: Context, L: Layer, x: KValue, rank: int) -> tuple[str, tuple]:
    """The ConvLSTM node on x -> (its value id, its per-step output shape)."""
    if not x.time:
        ctx.fail("a ConvLSTM layer applied to a tensor without a time axis")
    if len(x.shape) != rank + 1:
        ctx.fail(f"per-step input of shape {x.shape}; expected {rank} spatial axes and channels")
    if L.get("data_format", "channels_last") != "channels_last":
        ctx.fail("data_format='channels_first' is not supported; save the model with "
                 "channels_last frames")
    for k in ("initial_state", "constants"):
        if k in L.kwargs:
            ctx.fail(f"the layer is called with {k}=...: lstm-infer keeps the recurrent "
                     "state itself and starts from zeros")
    F = int(L.get("filters"))
    ks = _tuple(L.get("kernel_size"), rank)
    st = _tuple(L.get("strides", 1), rank)
    dl = _tuple(L.get("dilation_rate", 1), rank)
    pad = str(L.get("padding", "valid")).lower()
    frame = (1,) + x.shape if rank == 1 else x.shape
    H, W, C = frame
    use_bias = bool(L.get("use_bias", True))
    ws = ctx.weights(L, 3 if use_bias else 2)
    kernel, rec = ws[0], ws[1]
    if kernel.shape != (*ks, C, 4 * F) or rec.shape != (*ks, F, 4 * F):
        ctx.fail(f"kernel {kernel.shape} / recurrent_kernel {rec.shape} do not fit {C} input "
                 f"channels and {F} filters")
    if rank == 1:
        ks, st, dl = (1,) + ks, (1,) + st, (1,) + dl
        kernel, rec = kernel[None], rec[None]
    if pad == "same":
        (pt, pb), (pl, pr) = (same_pads(n, k, s, d) for n, k, s, d in zip((H, W), ks, st, dl))
    elif pad == "valid":
        pt = pb = pl = pr = 0
    else:
        ctx.fail(f"padding={pad!r}: supported are 'valid' and 'same'")
    rec_act = gate_activation(ctx, L.get("recurrent_activation", "sigmoid"), "recurrent_activation")
    act = gate_activation(ctx, L.get("activation", "tanh"), "activation")
    attrs = {"in_height": H, "in_width": W, "in_channels": C, "filters": F,
             "kernel_size": list(ks), "strides": list(st), "dilation": list(dl),
             "pads": [pt, pl, pb, pr], "reverse": bool(L.get("go_backwards"))}
    if (rec_act["kind"], act["kind"]) != ("sigmoid", "tanh"):
        attrs["activations"] = [rec_act, act, act]
    weights = {"W_x": kernel, "W_h": rec, "bias": ws[2] if use_bias else None}
    vid = ctx.emit("ConvLSTM", [x.vid], attrs, weights)
    Ho = (H + pt + pb - dl[0] * (ks[0] - 1) - 1) // st[0] + 1
    Wo = (W + pl + pr - dl[1] * (ks[1] - 1) - 1) // st[1] + 1
    return vid, ((Wo, F) if rank == 1 else (Ho, Wo, F))


def _last(ctx: Context, x: KValue, vid: str, shape: tuple, reverse: bool, suffix: str = ""):
    """The layer's result for the whole sequence (prefix semantics; a reverse node's at
    step 0, FirstStep: whole sequences only)."""
    if reverse:
        vid = ctx.emit("FirstStep", [vid], {"size": int(np.prod(shape))}, None, suffix + ".last")
        return KValue(vid, shape, time=False, prefix_ok=False)
    return KValue(vid, shape, time=False, prefix_ok=x.prefix_ok)


def _convert(ctx: Context, L: Layer, ins: list, per_frame: bool, rank: int):
    if per_frame:
        ctx.fail("a ConvLSTM layer inside TimeDistributed is not supported")
    x = ins[0]
    vid, shape = _node(ctx, L, x, rank)
    reverse = bool(L.get("go_backwards"))
    if L.get("return_sequences"):
        if reverse:
            ctx.fail("go_backwards=True with return_sequences=True returns the outputs in "
                     "reversed time order, which lstm-infer cannot express; use "
                     "return_sequences=False")
        out = KValue(vid, shape, time=True, prefix_ok=x.prefix_ok)
    else:
        out = _last(ctx, x, vid, shape, reverse)
    if L.get("stateful"):
        ctx.warn("stateful=True: lstm-infer streams keep the state between calls anyway; "
                 "run() starts every sequence from zeros")
    if not L.get("return_state"):
        return out
    h = out if not L.get("return_sequences") else _last(ctx, x, vid, shape, reverse, ".h")
    return [out, h, Refused("the cell state c returned by a ConvLSTM with return_state=True "
                            "is not supported (only the output and h)")]


@layer("ConvLSTM1D")
def _convlstm1d(ctx: Context, L: Layer, ins: list, per_frame: bool):
    return _convert(ctx, L, ins, per_frame, 1)


@layer("ConvLSTM2D")
def _convlstm2d(ctx: Context, L: Layer, ins: list, per_frame: bool):
    return _convert(ctx, L, ins, per_frame, 2)
