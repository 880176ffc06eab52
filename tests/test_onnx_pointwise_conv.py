"""A kernel-1 Conv along an axis that holds time (or batch) is a per-step Linear over the
channels (converters/onnx_ops/linear.py `pointwise_conv`): silero-vad's head
`Conv1d(128, 1, k=1)` over (batch, channels, time) after its LSTM."""
import numpy as np
import pytest
from onnx import helper

from converters import ConversionError
from converters.onnx_import import convert_onnx
from onnx_helpers import check, init, make_model, rnd, vi

N = helper.make_node


def _head(rng, C, M, groups=1, bias=True, pads=None, kernel=1, strides=None):
    W = rnd(rng, M, C // groups, kernel, scale=0.5)
    inits = [init("W", W)] + ([init("b", rnd(rng, M))] if bias else [])
    attrs = dict(kernel_shape=[kernel], group=groups)
    if pads is not None:
        attrs["pads"] = pads
    if strides is not None:
        attrs["strides"] = strides
    conv = N("Conv", ["xt", "W"] + (["b"] if bias else []), ["c"], name="head", **attrs)
    return conv, inits


@pytest.mark.parametrize("groups,bias", [(1, True), (1, False), (2, True), (4, True)])
def test_conv_k1_over_time_is_a_linear(tmp_path, groups, bias):
    """x (T, B, C) -> Transpose (B, C, T) -> Conv k=1 -> Sigmoid -> Transpose (T, B, M)."""
    rng = np.random.default_rng(0)
    C, M = 8, 4
    conv, inits = _head(rng, C, M, groups, bias)
    nodes = [N("Transpose", ["x"], ["xt"], perm=[1, 2, 0]), conv,
             N("Sigmoid", ["c"], ["s"]), N("Transpose", ["s"], ["y"], perm=[2, 0, 1])]
    model = make_model(nodes, [vi("x", ["seq", "batch", C])], [vi("y", None)], inits)
    m, v, _ = check(model, tmp_path)
    assert [n.op for n in m.graph.nodes] == ["Linear", "Activation"]


def test_vad_like_head_after_lstm(tmp_path):
    """silero-vad's decoder: LSTM -> Squeeze -> Relu -> Transpose(1, 2, 0) -> Conv k=1 ->
    Sigmoid, output (batch, 1, T) with time on its last axis."""
    rng = np.random.default_rng(1)
    I, H = 6, 5
    inits = [init("Wl", rnd(rng, 1, 4 * H, I, scale=0.4)), init("Rl", rnd(rng, 1, 4 * H, H, scale=0.4)),
             init("Bl", rnd(rng, 1, 8 * H, scale=0.2)), init("ax", np.array([1], np.int64))]
    conv, ci = _head(rng, H, 1)
    nodes = [N("LSTM", ["x", "Wl", "Rl", "Bl"], ["Y"], hidden_size=H),
             N("Squeeze", ["Y", "ax"], ["sq"]), N("Relu", ["sq"], ["r"]),
             N("Transpose", ["r"], ["xt"], perm=[1, 2, 0]), conv, N("Sigmoid", ["c"], ["y"])]
    model = make_model(nodes, [vi("x", ["seq", "batch", I])], [vi("y", None)], inits + ci)
    m, v, _ = check(model, tmp_path)
    assert m.streamable


def test_conv_k1_over_batch_axis(tmp_path):
    """The length axis holds batch (B, C, T) read with batch and time swapped: still per step."""
    rng = np.random.default_rng(2)
    conv, inits = _head(rng, 3, 6)
    nodes = [N("Transpose", ["x"], ["xt"], perm=[0, 2, 1]), conv,
             N("Transpose", ["c"], ["y"], perm=[0, 2, 1])]
    model = make_model(nodes, [vi("x", ["seq", "batch", 3])], [vi("y", None)], inits)
    check(model, tmp_path)


@pytest.mark.parametrize("attrs,why", [
    (dict(kernel=3, pads=[1, 1]), "across time steps"),
    (dict(kernel=1, pads=[1, 0]), "across time steps"),
    (dict(kernel=1, strides=[2]), "across time steps"),
], ids=["kernel3", "padded", "strided"])
def test_other_convs_over_time_are_still_rejected(tmp_path, attrs, why):
    rng = np.random.default_rng(3)
    conv, inits = _head(rng, 4, 2, **attrs)
    nodes = [N("Transpose", ["x"], ["xt"], perm=[1, 2, 0]), conv]
    model = make_model(nodes, [vi("x", ["seq", "batch", 4])], [vi("c", None)], inits)
    with pytest.raises(ConversionError, match=why):
        convert_onnx(model, tmp_path / "x.lstm", verify=False)
