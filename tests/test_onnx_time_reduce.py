"""ONNX ReduceMean/ReduceSum/ReduceMax/ReduceMin over the time axis (opset 13 attribute
axes, opset 18 input axes; time-major and batch-major inputs) against onnxruntime: the
converter's verifier at two lengths, then every row of run() and of a chunked stream
against onnxruntime on the prefix x[:t+1] (prefix semantics). Tolerance 1e-5."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper

from converters import ConversionError
from converters.onnx_import import convert_onnx
from onnx_helpers import TOL, check, init, make_model, vi

N = helper.make_node


def _model(op, opset, time_axis, keepdims):
    rng = np.random.default_rng(0)
    dims = ["seq", "batch", 4] if time_axis == 0 else ["batch", "seq", 4]
    red_attrs, red_ins, inits = {}, ["h"], [init("W", rng.uniform(-0.5, 0.5, (4, 3)).astype(np.float32))]
    if opset >= 18 or (op == "ReduceSum" and opset >= 13):
        red_ins.append("axes")
        inits.append(init("axes", np.array([time_axis], np.int64)))
    else:
        red_attrs["axes"] = [time_axis]
    nodes = [N("Tanh", ["x"], ["h"]), N(op, red_ins, ["r"], keepdims=keepdims, **red_attrs),
             N("MatMul", ["r", "W"], ["y"])]
    return make_model(nodes, [vi("x", dims)], [vi("y", None)], inits, opset=opset)


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin"])
@pytest.mark.parametrize("opset,time_axis,keepdims", [(13, 0, 0), (18, 1, 0), (17, 1, 1)])
def test_reduce_over_time(tmp_path, op, opset, time_axis, keepdims):
    model = _model(op, opset, time_axis, keepdims)
    m, _, _ = check(model, tmp_path)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    X = np.random.default_rng(1).standard_normal((2, 40, 4)).astype(np.float32)  # (B, T, F)
    got = m.run(X)
    s = m.stream()
    streamed = np.concatenate([s.step_many(X[0, :3]), s.step(X[0, 3])[None], s.step_many(X[0, 4:])])
    for t in (0, 5, 17, 39):
        xp = X[:, :t + 1] if time_axis == 1 else X[:, :t + 1].transpose(1, 0, 2)
        want = sess.run(None, {"x": np.ascontiguousarray(xp)})[0].reshape(2, 3)
        assert np.abs(got[:, t] - want).max() <= TOL
        assert np.abs(streamed[t] - want[0]).max() <= TOL


def test_reduce_over_time_and_features_is_refused(tmp_path):
    nodes = [N("ReduceMean", ["x"], ["y"], axes=[0, 2], keepdims=0)]
    model = make_model(nodes, [vi("x", ["seq", "batch", 4])], [vi("y", None)], opset=13)
    with pytest.raises(ConversionError, match="time axis alone"):
        convert_onnx(model, tmp_path / "m.lstm", verify=False)
