"""ONNX attention pooling (Softmax over time of one score per step, Mul by the sequence,
ReduceSum over time) -> one AttentionPool, against onnxruntime: the converter's verifier,
then rows of run() and of a chunked stream against onnxruntime on the prefix x[:t+1]
(prefix semantics). Hand-built graphs (batch- and time-major, either Mul order,
keepdims) and torch's attention pooling exported by both torch.onnx exporters.
Tolerance 1e-5."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper

from converters import ConversionError
from converters.onnx_import import convert_onnx
from dynamo_export import export_dynamo
from onnx_helpers import TOL, check, init, make_model, vi

N = helper.make_node


def _prefix_rows(model, m, time_axis: int, F: int = 4, out: int = 3) -> None:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    X = np.random.default_rng(1).standard_normal((2, 20, F)).astype(np.float32)  # (B, T, F)
    got = m.run(X)
    s = m.stream()
    streamed = np.concatenate([s.step_many(X[0, :3]), s.step(X[0, 3])[None], s.step_many(X[0, 4:])])
    for t in (0, 1, 6, 19):
        xp = X[:, :t + 1] if time_axis == 1 else X[:, :t + 1].transpose(1, 0, 2)
        want = sess.run(None, {"x": np.ascontiguousarray(xp)})[0].reshape(2, out)
        assert np.abs(got[:, t] - want).max() <= TOL
        assert np.abs(streamed[t] - want[0]).max() <= TOL


def _pool_model(time_axis: int, h_first: bool, keepdims: int):
    rng = np.random.default_rng(0)
    dims = ["seq", "batch", 4] if time_axis == 0 else ["batch", "seq", 4]
    inits = [init("Wa", rng.uniform(-0.8, 0.8, (4, 5)).astype(np.float32)),
             init("va", rng.uniform(-0.8, 0.8, (5, 1)).astype(np.float32)),
             init("W", rng.uniform(-0.5, 0.5, (4, 3)).astype(np.float32)),
             init("axes", np.array([time_axis], np.int64))]
    nodes = [N("Tanh", ["x"], ["h"]), N("MatMul", ["h", "Wa"], ["u"]), N("Tanh", ["u"], ["ut"]),
             N("MatMul", ["ut", "va"], ["score"]), N("Softmax", ["score"], ["a"], axis=time_axis),
             N("Mul", ["h", "a"] if h_first else ["a", "h"], ["ah"]),
             N("ReduceSum", ["ah", "axes"], ["ctx"], keepdims=keepdims),
             N("MatMul", ["ctx", "W"], ["y"])]
    return make_model(nodes, [vi("x", dims)], [vi("y", None)], inits, opset=17)


@pytest.mark.parametrize("time_axis,h_first,keepdims", [(1, False, 0), (0, True, 0), (1, True, 1)])
def test_attention_pooling_graph(tmp_path, time_axis, h_first, keepdims):
    model = _pool_model(time_axis, h_first, keepdims)
    m, _, _ = check(model, tmp_path)
    assert "AttentionPool" in {n.op for n in m.graph.nodes} and m.streamable
    _prefix_rows(model, m, time_axis)


def test_softmax_over_time_read_otherwise_is_refused(tmp_path):
    nodes = [N("Softmax", ["x"], ["a"], axis=1), N("Mul", ["a", "x"], ["ah"]),
             N("ReduceMean", ["ah"], ["y"], axes=[1], keepdims=0)]
    model = make_model(nodes, [vi("x", ["batch", "seq", 1])], [vi("y", None)], opset=13)
    with pytest.raises(ConversionError, match="attention pooling is Softmax over time"):
        convert_onnx(model, tmp_path / "m.lstm", verify=False)
    nodes = [N("Softmax", ["x"], ["y"], axis=1)]
    model = make_model(nodes, [vi("x", ["batch", "seq", 4])], [vi("y", None)], opset=13)
    with pytest.raises(ConversionError, match="4 scores per step"):
        convert_onnx(model, tmp_path / "m2.lstm", verify=False)


torch = pytest.importorskip("torch")


class _AttentionPool(torch.nn.Module):
    """The three ways people write it: (a * h).sum(1); scores squeezed to (B, T) then
    a.unsqueeze(-1) * h; bmm(a.transpose(1, 2), h)."""

    def __init__(self, form: str):
        super().__init__()
        self.form = form
        self.lstm = torch.nn.LSTM(4, 6, batch_first=True)
        self.W, self.v, self.fc = torch.nn.Linear(6, 5), torch.nn.Linear(5, 1), torch.nn.Linear(6, 3)

    def forward(self, x):
        h, _ = self.lstm(x)
        score = self.v(torch.tanh(self.W(h)))
        if self.form == "squeeze":
            return self.fc((torch.softmax(score.squeeze(-1), dim=1).unsqueeze(-1) * h).sum(1))
        a = torch.softmax(score, dim=1)
        if self.form == "bmm":
            return self.fc(torch.bmm(a.transpose(1, 2), h).squeeze(1))
        return self.fc((a * h).sum(1))


@pytest.mark.parametrize("dynamo,form", [(False, "sum"), (False, "squeeze"), (False, "bmm"),
                                         (True, "sum")])
def test_torch_attention_pooling_exported(tmp_path, dynamo, form):
    import onnx
    path = str(tmp_path / "m.onnx")
    if dynamo:
        export_dynamo("test_onnx_attention_pool", "_AttentionPool", path, (3, 11, 4), arg=form)
    else:
        torch.manual_seed(0)
        torch.onnx.export(_AttentionPool(form).eval(), (torch.randn(3, 11, 4),), path,
                          input_names=["x"], output_names=["y"], dynamo=False,
                          dynamic_axes={"x": {0: "B", 1: "T"}})
    out = tmp_path / "m.lstm"
    report = convert_onnx(path, out)
    assert report.verify.ok
    import lstm_infer
    m = lstm_infer.load(out)
    assert "AttentionPool" in {n.op for n in m.graph.nodes} and m.streamable
    _prefix_rows(onnx.load(path), m, 1)
