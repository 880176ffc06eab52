"""2-D Conv over (time, frequency) node by node against onnxruntime: per-frame (time kernel
1) and causal (zero frames in front of time, from a Pad or the Conv's own pads), groups,
strides over frequency, both layouts; non-causal and strided-in-time are refused."""
import numpy as np
import pytest
from onnx import helper

from converters import ConversionError
from onnx_helpers import check, init, make_model, rnd, vi

rng = np.random.default_rng(11)


def _conv_model(x_dims, W, b=None, pad_time=0, time_axis=2, **attrs):
    nodes, inits = [], [init("W", W)]
    src = "x"
    if pad_time:
        pads = [0, 0, 0, 0, 0, 0, 0, 0]
        pads[time_axis] = pad_time
        inits.append(init("pads", np.array(pads, np.int64)))
        nodes.append(helper.make_node("Pad", ["x", "pads"], ["xp"], name="causal_pad"))
        src = "xp"
    ins = [src, "W"] + (["b"] if b is not None else [])
    if b is not None:
        inits.append(init("b", b))
    nodes.append(helper.make_node("Conv", ins, ["c"], name="the_conv", **attrs))
    nodes.append(helper.make_node("Relu", ["c"], ["y"], name="relu"))
    return make_model(nodes, [vi("x", x_dims)], [vi("y", None)], inits, opset=13)


@pytest.mark.parametrize("C,F,M,kt,kf,group,sf,pad_in_conv", [
    (1, 8, 4, 3, 3, 1, 1, False),     # DeepFilterNet's first conv: Pad(2 frames) + Conv (3,3)
    (2, 9, 4, 3, 3, 2, 1, False),     # grouped
    (2, 8, 6, 2, 3, 1, 2, True),      # causal pads inside the Conv, stride 2 over frequency
    (4, 6, 4, 1, 3, 4, 2, False),     # time kernel 1: per frame, depthwise, strided
    (3, 5, 2, 1, 1, 1, 1, False),     # 1x1
])
def test_conv_over_time_and_frequency(tmp_path, C, F, M, kt, kf, group, sf, pad_in_conv):
    W = rnd(rng, M, C // group, kt, kf, scale=0.5)
    b = rnd(rng, M)
    pf = kf // 2
    pads = [kt - 1 if pad_in_conv else 0, pf, 0, pf]
    model = _conv_model([1, C, "T", F], W, b, pad_time=0 if pad_in_conv else kt - 1,
                        kernel_shape=[kt, kf], pads=pads, strides=[1, sf], group=group)
    m, v, _ = check(model, tmp_path, T=17, B=1)
    assert ("History" in {n.op for n in m.graph.nodes}) == (kt > 1)


def test_time_as_last_axis(tmp_path):
    W = rnd(rng, 3, 2, 3, 2, scale=0.5)   # (M, C, kf, kt): time is the last axis
    model = _conv_model([1, 2, 6, "T"], W, pad_time=1, time_axis=3, kernel_shape=[3, 2],
                        pads=[1, 0, 1, 0])
    check(model, tmp_path, T=12, B=1)


def test_dilated_causal_conv(tmp_path):
    W = rnd(rng, 2, 1, 2, 3, scale=0.5)
    model = _conv_model([1, 1, "T", 7], W, pad_time=3, kernel_shape=[2, 3], pads=[0, 1, 0, 1],
                        dilations=[3, 1])
    m, _, _ = check(model, tmp_path, T=15, B=1)
    assert any(n.op == "History" and n.attrs.get("dilation") == 3 for n in m.graph.nodes)


def test_non_causal_time_padding_is_refused(tmp_path):
    W = rnd(rng, 2, 1, 3, 3)
    model = _conv_model([1, 1, "T", 6], W, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    with pytest.raises(ConversionError, match="not causal"):
        check(model, tmp_path, T=9, B=1)


def test_time_stride_is_refused(tmp_path):
    W = rnd(rng, 2, 1, 2, 3)
    model = _conv_model([1, 1, "T", 6], W, pad_time=1, kernel_shape=[2, 3], pads=[0, 1, 0, 1],
                        strides=[2, 1])
    with pytest.raises(ConversionError, match="time stride 2"):
        check(model, tmp_path, T=9, B=1)


@pytest.mark.parametrize("C,M,K,s,pads,outpad,group", [
    (4, 4, 3, 2, [1, 1], 1, 4),    # DeepFilterNet's decoder: depthwise, stride 2, output_padding 1
    (2, 3, 3, 1, [0, 0], 0, 1),
    (2, 4, 4, 3, [2, 1], 2, 2),    # grouped, pads larger on one side
])
def test_conv_transpose_over_frequency(tmp_path, C, M, K, s, pads, outpad, group):
    F = 7
    W = rnd(rng, C, M // group, 1, K, scale=0.5)
    node = helper.make_node("ConvTranspose", ["x", "W", "b"], ["y"], name="convt",
                            kernel_shape=[1, K], strides=[1, s], pads=[0, pads[0], 0, pads[1]],
                            output_padding=[0, outpad], group=group)
    model = make_model([node], [vi("x", [1, C, "T", F])], [vi("y", None)],
                       [init("W", W), init("b", rnd(rng, M))], opset=13)
    check(model, tmp_path, T=6, B=1)


def test_conv_transpose_1d_over_features(tmp_path):
    W = rnd(rng, 3, 2, 3, scale=0.5)
    node = helper.make_node("ConvTranspose", ["x", "W"], ["y"], name="convt1d", strides=[2],
                            pads=[1, 0])
    model = make_model([node], [vi("x", ["T", 3, 5])], [vi("y", None)], [init("W", W)], opset=13)
    check(model, tmp_path, T=6, B=1)
