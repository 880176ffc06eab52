"""Several per-step data inputs (DeepFilterNet's decoders take the encoder's outputs):
every float graph input over the same time axis becomes an engine input, verified against
onnxruntime with random values in each; the model takes a dict or the inputs side by side."""
import numpy as np
from onnx import helper

from onnx_helpers import check, init, make_model, rnd, vi

rng = np.random.default_rng(5)


def _two_inputs(time_major=False):
    a_dims, b_dims = (["T", "B", 3], ["T", "B", 2]) if time_major else (["B", "T", 3], ["B", "T", 2])
    nodes = [
        helper.make_node("MatMul", ["a", "Wa"], ["pa"], name="proj_a"),
        helper.make_node("MatMul", ["b", "Wb"], ["pb"], name="proj_b"),
        helper.make_node("Add", ["pa", "pb"], ["s"], name="sum"),
        helper.make_node("Tanh", ["s"], ["y"], name="act"),
    ]
    inits = [init("Wa", rnd(rng, 3, 4)), init("Wb", rnd(rng, 2, 4))]
    return make_model(nodes, [vi("a", a_dims), vi("b", b_dims)], [vi("y", None)], inits)


def test_two_data_inputs_match_onnxruntime(tmp_path):
    m, v, _ = check(_two_inputs(), tmp_path, T=11, B=2)
    assert m.input_names == ["a", "b"] and m.input_size == 5
    assert m.provenance["onnx"]["extra_data_inputs"] == ["b"]


def test_two_time_major_inputs_into_a_gru(tmp_path):
    nodes = [helper.make_node("Concat", ["a", "b"], ["x"], name="cat", axis=2),
             helper.make_node("GRU", ["x", "W", "R"], ["Y", "Yh"], name="gru", hidden_size=4)]
    inits = [init("W", rnd(rng, 1, 12, 5)), init("R", rnd(rng, 1, 12, 4))]
    model = make_model(nodes, [vi("a", ["T", "B", 3]), vi("b", ["T", "B", 2])], [vi("Y", None)], inits)
    m, v, _ = check(model, tmp_path, T=9, B=2)
    X = rng.standard_normal((9, 5)).astype(np.float32)
    np.testing.assert_array_equal(m.run({"a": X[:, :3], "b": X[:, 3:]}), m.run(X))
