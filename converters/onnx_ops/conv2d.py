"""2-D Conv over (time, frequency): per frame when the time kernel is 1, else causal.

Streaming audio models (DeepFilterNet) convolve spectrogram frames over (time, freq)
with a kernel (kt, kf), made causal by zero frames padded in front of the time axis
(an explicit Pad, or the Conv's own pads). Per step that is: the last kt frames
(`History`, zeros at the start) stacked as kt*C channels, then a 1-D convolution over
frequency (`Conv1d`) with the kernel reshaped (M, C/g, kt, kf) -> (M, C/g*kt, kf).
A time kernel of 1 is a per-frame Conv1d over frequency. Padding that is not causal
(frames after t) would need future inputs, and a time stride > 1 changes the frame
rate: both are refused with the reason. ConvTranspose over frequency (time kernel 1) or
over per-step features is a Gather (the input spread between zeros) and a Conv1d.
"""
from __future__ import annotations

import numpy as np

from ..onnx_graph import OnnxConversionError, OnnxValue
from ..onnx_sym import AxisError, Dyn, transpose
from .common import is_val
from .registry import op


def causal_time_pad(d: Dyn, pads, axes, mode: str, value: float):
    """(d, time axis, frames) when a Pad only adds zero frames in front of the time axis."""
    if mode != "constant" or value != 0.0:
        return None
    ax = list(range(d.rank)) if axes is None else [int(k) % d.rank for k in axes]
    begin, end = [0] * d.rank, [0] * d.rank
    for j, k in enumerate(ax):
        begin[k], end[k] = int(pads[j]), int(pads[j + len(ax)])
    moved = [k for k in range(d.rank) if begin[k] or end[k]]
    if len(moved) != 1 or end[moved[0]] or d.axes[moved[0]] != ("T",):
        return None
    return d, moved[0], begin[moved[0]]


def _time_axis(d: Dyn) -> int:
    spatial = [k for k in (2, 3) if not d.is_feature_axis(k)]
    if "F" in d.axes[0] or not d.is_feature_axis(1):
        raise AxisError(f"Conv input {d.describe()}: expected (batch, channels, ...) axes")
    if len(spatial) != 1 or d.axes[spatial[0]] != ("T",) or d.fshape[spatial[0]] != 1:
        raise AxisError(f"Conv over {d.describe()}: a 2-D convolution streams when one of its "
                        "two spatial axes is time (the other a per-step feature axis); "
                        "2-D convolutions over a whole per-step image are not supported yet")
    return spatial[0]


def conv2d(ctx, node, X: OnnxValue, W: np.ndarray, bias: np.ndarray | None, a: dict) -> list:
    causal = X.causal_pad
    d, padded = (causal[0], causal[2]) if causal else (X.need(), 0)
    if d.rank != 4:
        raise OnnxConversionError(f"2-D Conv input has rank {d.rank}, expected 4")
    ta = _time_axis(d)
    ctx.progress += 0.5  # this axis layout got further (ranks the errors of failed attempts)
    fa = 5 - ta                                   # the other spatial axis: frequency
    if causal and causal[1] != ta:
        raise AxisError("the Pad before this Conv pads another axis than its time axis")
    M, Cg = W.shape[:2]
    Wtf = W if ta == 2 else W.transpose(0, 1, 3, 2)  # (M, C/g, kt, kf)
    kt, kf = Wtf.shape[2:]
    strides = [int(s) for s in a.get("strides", [1, 1])]
    dils = [int(s) for s in a.get("dilations", [1, 1])]
    pads = [int(p) for p in a.get("pads", [0, 0, 0, 0])]
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise OnnxConversionError(f"Conv over time with auto_pad {a['auto_pad']}: only explicit "
                                  "(causal) padding streams")
    st, sf = strides[ta - 2], strides[fa - 2]
    dt, df = dils[ta - 2], dils[fa - 2]
    front, back = pads[ta - 2] + padded, pads[ta]
    pf0, pf1 = pads[fa - 2], pads[fa]
    where = node.name or "Conv"
    if st != 1:
        raise OnnxConversionError(f"{where}: time stride {st}: a strided convolution over time "
                                  "changes the frame rate and cannot stream one frame per step")
    if back or front != (kt - 1) * dt:
        raise OnnxConversionError(
            f"{where}: time padding ({front} in front, {back} after) is not causal for a time "
            f"kernel of {kt} (dilation {dt}): streaming needs exactly {(kt - 1) * dt} zero frames "
            "in front and none after, else the output depends on future frames")
    groups = int(a.get("group", 1))
    C, L = d.fshape[1], d.fshape[fa]
    if Cg * groups != C:
        raise OnnxConversionError(f"{where}: weights expect {Cg * groups} channels, input has {C}")
    frame = ctx.as_data(transpose(d, [0, ta, 1, fa]))   # per step (C, L), channel-major
    src, channels = frame.ref, C
    if kt > 1:
        hist = ctx.emit("History", f"{where}_history", [src],
                        {"size": C * L, "frames": kt, "dilation": dt})
        # (kt, C, L) -> (C, kt, L): stacked channel c*kt + j is frame j of channel c
        order = np.arange(kt * C * L).reshape(kt, C, L).transpose(1, 0, 2).reshape(-1)
        src = ctx.emit("Gather", f"{where}_frames", [hist],
                       {"in_size": kt * C * L, "out_size": kt * C * L},
                       {"index": order.astype(np.float32)})
        channels = C * kt
    v = ctx.emit("Conv1d", where, [src],
                 {"in_channels": channels, "in_length": L, "out_channels": M, "kernel_size": kf,
                  "stride": sf, "dilation": df, "pad_left": pf0, "pad_right": pf1,
                  "groups": groups},
                 {"W": np.ascontiguousarray(Wtf.reshape(M, Cg * kt, kf), np.float32),
                  "bias": None if bias is None else np.asarray(bias, np.float32)})
    n = ctx.size(v)
    lout = n // M
    idx = np.arange(n, dtype=np.int64).reshape(M, lout)
    idx = idx[None, :, None, :] if ta == 2 else idx[None, :, :, None]
    axes = [d.axes[0], ("F",) if M > 1 else (), None, None]
    axes[ta], axes[fa] = d.axes[ta], ("F",) if lout > 1 else ()
    return [OnnxValue(Dyn("data", v, idx, axes, ctx.mixed_readout(frame, n, "Conv")))]


def _transposed_as_conv(ctx, where: str, src: str, C: int, L: int, W: np.ndarray, bias, s: int,
                        d: int, pb: int, pe: int, op_: int, groups: int) -> str:
    """A 1-D transposed convolution of a (C, L) frame as a Gather (the input spread `s` apart
    between zeros, padded (K-1)*d - pb / (K-1)*d - pe + output_padding; negative pads crop)
    and a Conv1d with the kernel flipped and its channel axes swapped per group."""
    Cg, Mg, K = W.shape[0] // groups, W.shape[1], W.shape[2]
    left = (K - 1) * d - pb
    Lp = (L - 1) * s + 1 + left + (K - 1) * d - pe + op_
    if Lp < (K - 1) * d + 1:
        raise OnnxConversionError(f"{where}: ConvTranspose pads leave no output")
    j = np.arange(Lp) - left
    valid = (j >= 0) & (j % s == 0) & (j // s < L)
    pos = np.where(valid, j // s, -1)
    index = np.where(pos[None, :] >= 0, np.arange(C)[:, None] * L + pos[None, :], -1).reshape(-1)
    spread = ctx.emit("Gather", f"{where}_spread", [src], {"in_size": C * L, "out_size": C * Lp},
                      {"index": index.astype(np.float32)})
    # W (C_in, M/g, K) -> Conv1d weight (M, C_in/g, K): out m of group g reads its group's inputs
    Wc = np.empty((groups * Mg, Cg, K), np.float32)
    for g in range(groups):
        Wc[g * Mg:(g + 1) * Mg] = W[g * Cg:(g + 1) * Cg, :, ::-1].transpose(1, 0, 2)
    return ctx.emit("Conv1d", where, [spread],
                    {"in_channels": C, "in_length": Lp, "out_channels": groups * Mg,
                     "kernel_size": K, "stride": 1, "dilation": d, "pad_left": 0, "pad_right": 0,
                     "groups": groups},
                    {"W": Wc, "bias": None if bias is None else np.asarray(bias, np.float32)})


@op("ConvTranspose")
def _conv_transpose(ctx, node, ins, a):
    """ConvTranspose over per-step features (1-D), or over (time, freq) with a time kernel of
    1 (DeepFilterNet's decoder upsamples frequency this way): per frame, as a Conv1d."""
    X, W = ins[0], ins[1]
    Bc = ins[2] if len(ins) > 2 else None
    if not is_val(X) or is_val(W) or is_val(Bc):
        raise OnnxConversionError("ConvTranspose needs a per-step input and constant weights")
    W = np.asarray(W, np.float32)
    where = node.name or "ConvTranspose"
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID") or a.get("output_shape"):
        raise OnnxConversionError(f"{where}: ConvTranspose with auto_pad or output_shape is not "
                                  "supported; give pads and output_padding")
    n_sp = W.ndim - 2
    strides = [int(v) for v in a.get("strides", [1] * n_sp)]
    dils = [int(v) for v in a.get("dilations", [1] * n_sp)]
    pads = [int(v) for v in a.get("pads", [0] * 2 * n_sp)]
    outp = [int(v) for v in a.get("output_padding", [0] * n_sp)]
    groups = int(a.get("group", 1))
    d = X.need()
    if n_sp == 2:
        if d.rank != 4:
            raise OnnxConversionError(f"{where}: input rank {d.rank}, expected 4")
        ta = _time_axis(d)
        fa = 5 - ta
        t, f = ta - 2, fa - 2
        if W.shape[2 + t] != 1 or strides[t] != 1 or pads[t] or pads[t + 2] or outp[t]:
            raise OnnxConversionError(f"{where}: a transposed convolution over time (kernel "
                                      f"{W.shape[2 + t]}, stride {strides[t]}) does not stream "
                                      "one frame per step; only a time kernel of 1 does")
        Wf = W[:, :, 0, :] if t == 0 else W[:, :, :, 0]
        order = [0, ta, 1, fa]
    elif n_sp == 1:
        if d.rank != 3 or "F" in d.axes[0] or not (d.is_feature_axis(1) and d.is_feature_axis(2)):
            raise AxisError(f"{where}: ConvTranspose over {d.describe()}: only per-step features "
                            "(batch, channels, length) are supported")
        ta, fa, f, Wf, order = None, 2, 0, W, [0, 1, 2]
    else:
        raise OnnxConversionError(f"{where}: {n_sp}-D ConvTranspose is not supported")
    C, L = d.fshape[1], d.fshape[fa]
    if W.shape[0] != C:
        raise OnnxConversionError(f"{where}: weights expect {W.shape[0]} channels, input has {C}")
    frame = ctx.as_data(transpose(d, order))
    v = _transposed_as_conv(ctx, where, frame.ref, C, L, Wf, Bc, strides[f], dils[f],
                            pads[f], pads[f + n_sp], outp[f], groups)
    n = ctx.size(v)
    M = groups * W.shape[1]
    lout = n // M
    idx = np.arange(n, dtype=np.int64).reshape(M, lout)
    if ta is None:
        return [OnnxValue(Dyn("data", v, idx[None], [d.axes[0], ("F",) if M > 1 else (),
                                                       ("F",) if lout > 1 else ()],
                              ctx.mixed_readout(frame, n, "ConvTranspose")))]
    idx = idx[None, :, None, :] if ta == 2 else idx[None, :, :, None]
    axes = [d.axes[0], ("F",) if M > 1 else (), None, None]
    axes[ta], axes[fa] = d.axes[ta], ("F",) if lout > 1 else ()
    return [OnnxValue(Dyn("data", v, idx, axes, ctx.mixed_readout(frame, n, "ConvTranspose")))]
