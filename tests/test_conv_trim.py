"""A Conv1d whose output positions are only partly read (a Slice after it) computes just
those (converters/conv_trim.py), checked against onnxruntime."""
import numpy as np
from onnx import helper

from onnx_helpers import check, init, make_model, rnd, vi

N = helper.make_node


def _conv_slice(tmp_path, C, L, M, K, conv_attrs, keep, pad=None, seed=0):
    """x (T, C, L) [-> Pad] -> Conv -> Slice positions keep=(start, end) -> y."""
    rng = np.random.default_rng(seed)
    inits = [init("W", rnd(rng, M, C, K, scale=0.4)), init("b", rnd(rng, M)),
             init("st", np.array([keep[0]], np.int64)), init("en", np.array([keep[1]], np.int64)),
             init("ax", np.array([2], np.int64))]
    nodes, x = [], "x"
    if pad is not None:
        inits.append(init("pads", np.array([0, 0, pad, 0, 0, pad], np.int64)))
        nodes.append(N("Pad", ["x", "pads"], ["xp"], mode="reflect"))
        x = "xp"
    nodes += [N("Conv", [x, "W", "b"], ["c"], kernel_shape=[K], **conv_attrs),
              N("Slice", ["c", "st", "en", "ax"], ["y"])]
    model = make_model(nodes, [vi("x", ["seq", C, L])], [vi("y", None)], inits)
    m, v, _ = check(model, tmp_path)
    (conv,) = [n for n in m.graph.nodes if n.op == "Conv1d"]
    return m, conv


def test_padding_absorbs_the_trim(tmp_path):
    m, conv = _conv_slice(tmp_path, 3, 9, 4, 3, dict(pads=[2, 2]), (1, -1))
    assert (conv.attrs["pad_left"], conv.attrs["pad_right"]) == (1, 1)
    assert m.output_size == 4 * 9


def test_trim_folds_into_the_input_gather(tmp_path):
    """silero-vad's STFT: reflect Pad, strided Conv, the first position sliced off."""
    m, conv = _conv_slice(tmp_path, 1, 24, 6, 8, dict(strides=[4]), (1, 100), pad=4)
    ops = [n.op for n in m.graph.nodes]
    assert ops[:2] == ["Gather", "Conv1d"] and "Gather" not in ops[2:-1]
    assert conv.attrs["in_length"] == (32 - 8) // 4 * 4 + 8 - 4   # 6 of 7 positions
    assert m.output_size == 6 * 6


def test_trim_inserts_a_crop(tmp_path):
    m, conv = _conv_slice(tmp_path, 2, 20, 3, 4, dict(strides=[3], dilations=[2]), (2, 4))
    ops = [n.op for n in m.graph.nodes]
    assert ops[:2] == ["Gather", "Conv1d"]
    assert conv.attrs["in_length"] == 3 + 2 * 3 + 1
    assert m.output_size == 3 * 2
