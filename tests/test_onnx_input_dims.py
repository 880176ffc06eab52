"""A data input whose feature size is not declared (dims like [input_dim_0, input_dim_1]):
the size is read off the weights of its first consumer (a recurrent op's W, a MatMul or
Gemm weight, a Conv kernel, a constant it is multiplied with), through the ops that only
move axes on the way. Each model is compared with onnxruntime (`check`, max abs error
1e-5 on unit-scale data, fp32)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from converters.onnx_dims import infer_feature_dims
from converters.onnx_inputs import graph_dims

from onnx_helpers import check, init, make_model, rnd, vi

N = helper.make_node
RNG = np.random.default_rng(3)
I, H, O = 5, 4, 3


def i64(name, vals):
    return init(name, np.asarray(vals, np.int64))


def lstm_inits(n_in=I):
    return [init("W", rnd(RNG, 1, 4 * H, n_in, scale=0.5)), init("R", rnd(RNG, 1, 4 * H, H, scale=0.5)),
            init("B", rnd(RNG, 1, 8 * H, scale=0.5))]


def test_time_by_features_without_batch_into_lstm(tmp_path):
    """[T?, F?] -> Unsqueeze(1) -> LSTM: F is the LSTM's input_size."""
    nodes = [N("Unsqueeze", ["x", "ax1"], ["xb"]), N("LSTM", ["xb", "W", "R", "B"], ["Y"], hidden_size=H),
             N("Squeeze", ["Y", "ax12"], ["y"])]
    model = make_model(nodes, [vi("x", ["input_dim_0", "input_dim_1"])], [vi("y", None)],
                       lstm_inits() + [i64("ax1", [1]), i64("ax12", [1, 2])], opset=13)
    m, _, rep = check(model, tmp_path)
    assert m.input_size == I
    assert any("axis 1" in w and f"taken as {I} features" in w and "LSTM W" in w for w in rep.warnings)


@pytest.mark.parametrize("dims", [["seq", "batch", None], [None, None, None], ["a", "b", "c"]])
def test_undeclared_features_into_matmul_then_lstm(tmp_path, dims):
    """[T, B, F?] -> Mul by a scalar -> Transpose-free MatMul (F, 6) -> LSTM."""
    nodes = [N("Mul", ["x", "g"], ["xg"]), N("MatMul", ["xg", "Wp"], ["xp"]),
             N("LSTM", ["xp", "W", "R", "B"], ["Y"], hidden_size=H)]
    model = make_model(nodes, [vi("x", dims)], [vi("Y", None)],
                       lstm_inits(6) + [init("g", np.float32(0.5)), init("Wp", rnd(RNG, I, 6))])
    m, _, _ = check(model, tmp_path)
    assert m.input_size == I


def test_features_through_transpose_into_gemm_and_conv():
    """The traced axis follows Transpose/Squeeze; Gemm (transB) and Conv (groups) fix it."""
    gemm = make_model([N("Squeeze", ["x", "ax0"], ["xs"]), N("Transpose", ["xs"], ["xt"], perm=[1, 0]),
                       N("Gemm", ["xt", "Wg"], ["y"], transB=1)],
                      [vi("x", [1, "f", "t"])], [vi("y", None)],
                      [i64("ax0", [0]), init("Wg", rnd(RNG, O, 7))])
    dims, notes = infer_feature_dims(gemm, "x", graph_dims(gemm.graph.input[0]))
    assert dims == [1, 7, "t"] and "Gemm weight [3, 7]" in notes[0]
    conv = make_model([N("Conv", ["x", "Wc"], ["y"], group=2)], [vi("x", ["n", "c", 16])],
                      [vi("y", None)], [init("Wc", rnd(RNG, 4, 3, 3))])
    dims, _ = infer_feature_dims(conv, "x", graph_dims(conv.graph.input[0]))
    assert dims == ["n", 6, 16]


def test_time_and_batch_axes_are_never_given_a_size():
    """An axis that reaches a recurrent op's sequence/batch axis stays symbolic; so does one
    named like time or batch."""
    nodes = [N("LSTM", ["x", "W", "R", "B"], ["Y"], hidden_size=H)]
    model = make_model(nodes, [vi("x", ["d0", "d1", "d2"])], [vi("Y", None)], lstm_inits())
    dims, notes = infer_feature_dims(model, "x", ["d0", "d1", "d2"])
    assert dims == ["d0", "d1", I] and len(notes) == 1
    dims, notes = infer_feature_dims(model, "x", ["time", "batch", "feat"])
    assert dims == ["time", "batch", I]
