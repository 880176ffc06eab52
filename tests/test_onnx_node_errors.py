"""Conversion errors name the node, its op and what is supported; an unexpected exception
inside an op converter (IndexError, KeyError, ...) never reaches the user as its bare
message: the node dispatcher turns it into a ConversionError that names node and op and
says it is a bug of the converter."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from converters import ConversionError, convert_onnx
from converters.onnx_ops import HANDLERS

from onnx_helpers import init, make_model, vi

N = helper.make_node


def _relu_model():
    return make_model([N("Relu", ["x"], ["y"], name="my_relu")], [vi("x", ["seq", "batch", 3])],
                      [vi("y", None)])


@pytest.mark.parametrize("exc", [IndexError("index 3 is out of bounds"), KeyError("w"),
                                 TypeError("unsupported operand"), AssertionError()])
def test_internal_errors_are_named_converter_bugs(tmp_path, monkeypatch, exc):
    def broken(ctx, node, ins, attrs):
        raise exc
    monkeypatch.setitem(HANDLERS, "Relu", broken)
    with pytest.raises(ConversionError) as e:
        convert_onnx(_relu_model(), tmp_path / "m.lstm", verify=False)
    msg = str(e.value)
    assert "node 'my_relu' (Relu)" in msg and "bug in lstm-infer" in msg
    assert type(exc).__name__ in msg
    assert not (tmp_path / "m.lstm").exists()


def test_expected_errors_keep_their_message_with_node_and_op(tmp_path):
    nodes = [N("Gather", ["x", "idx"], ["y"], axis=0, name="pick_step")]
    model = make_model(nodes, [vi("x", ["seq", "batch", 3])], [vi("y", None)],
                       [init("idx", np.array(2, np.int64))])
    with pytest.raises(ConversionError, match=r"node 'pick_step' \(Gather\): Gather of index 2 on "
                                              r"the time axis.*only the last time step"):
        convert_onnx(model, tmp_path / "m.lstm", verify=False)
