"""Einsum with a constant weight, node by node against onnxruntime: the grouped linears
exporters write (DeepFilterNet's btgi,gih->btgh), plain contractions, and clear errors."""
import numpy as np
import pytest
from onnx import helper

from converters import ConversionError
from onnx_helpers import check, init, make_model, rnd, vi

rng = np.random.default_rng(7)


def _einsum_model(equation: str, x_dims, w, data_first=True):
    ins = ["x", "w"] if data_first else ["w", "x"]
    node = helper.make_node("Einsum", ins, ["y"], name="the_einsum", equation=equation)
    return make_model([node], [vi("x", x_dims)], [vi("y", None)], [init("w", w)], opset=12)


@pytest.mark.parametrize("equation,x_dims,w_shape", [
    ("btgi,gih->btgh", ["B", "T", 4, 6], (4, 6, 5)),      # DeepFilterNet's grouped linear
    ("btgi,gih->bthg", ["B", "T", 3, 4], (3, 4, 2)),      # group axis moved in the output
    ("bti,ih->bth", ["B", "T", 7], (7, 3)),                # a plain Linear
    ("btij,jk->btik", ["B", "T", 2, 5], (5, 3)),           # one matrix applied to each row
    ("btij,ij->bt", ["B", "T", 3, 4], (3, 4)),             # full contraction to a scalar
    ("tbi,hi->tbh", ["T", "B", 6], (4, 6)),                # time-major, weight transposed
])
def test_einsum_matches_onnxruntime(tmp_path, equation, x_dims, w_shape):
    m, v, _ = check(_einsum_model(equation, x_dims, rnd(rng, *w_shape)), tmp_path, T=9, B=2)
    grouped = [n for n in m.graph.nodes if n.op == "Linear" and n.attrs.get("groups", 1) > 1]
    if equation.startswith("btgi,gih"):
        assert grouped and grouped[0].attrs["groups"] == w_shape[0], m


def test_weight_first_operand(tmp_path):
    check(_einsum_model("gih,btgi->btgh", ["B", "T", 2, 3], rnd(rng, 2, 3, 4), data_first=False),
          tmp_path, T=5, B=2)


def test_ellipsis_is_refused_with_the_reason(tmp_path):
    with pytest.raises(ConversionError, match="ellipsis"):
        check(_einsum_model("...i,ih->...h", ["B", "T", 4], rnd(rng, 4, 3)), tmp_path)


def test_two_per_step_operands_are_refused(tmp_path):
    node = helper.make_node("Einsum", ["x", "x"], ["y"], name="sq", equation="bti,bti->bt")
    model = make_model([node], [vi("x", ["B", "T", 3])], [vi("y", None)], opset=12)
    with pytest.raises(ConversionError, match="one per-step tensor and one constant"):
        check(model, tmp_path)
