"""ONNX `Attention` (opset 23) over per-step q, k, v against onnxruntime: is_causal=1 is
CausalAttention (the converter's verifier whole and streamed, then every checked row of
run() and of a chunked stream against onnxruntime on the prefix x[:t+1]); no mask is
SequenceAttention (run() only). Hand-built graphs with (B, heads, T, D) and (B, T, hidden)
operands, and torch's F.scaled_dot_product_attention exported by
torch.onnx.export(dynamo=True, opset_version=23). Tolerance 1e-5."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper

import lstm_infer
from converters import ConversionError
from converters.onnx_import import convert_onnx
from dynamo_export import export_dynamo
from onnx_helpers import TOL, check, init, make_model, vi

N = helper.make_node


def _graph(causal: int, four_d: bool, mask: bool = False):
    """x (B, T, 4) -> q, k, v projections (2 heads of 3) -> Attention -> (B, T, 6) @ Wo."""
    rng = np.random.default_rng(0)
    inits = [init(f"W{r}", rng.uniform(-0.8, 0.8, (4, 6)).astype(np.float32)) for r in "qkvo"[:3]]
    inits += [init("Wo", rng.uniform(-0.5, 0.5, (6, 3)).astype(np.float32)),
              init("heads", np.array([0, 0, 2, 3], np.int64)),
              init("flat", np.array([0, 0, 6], np.int64))]
    nodes = [N("Tanh", ["x"], ["h"])]
    for r in "qkv":
        nodes.append(N("MatMul", ["h", f"W{r}"], [f"{r}3"]))
        if four_d:
            nodes += [N("Reshape", [f"{r}3", "heads"], [f"{r}s"]),
                      N("Transpose", [f"{r}s"], [r], perm=[0, 2, 1, 3])]
    names = ["q", "k", "v"] if four_d else ["q3", "k3", "v3"]
    attrs = {} if four_d else {"q_num_heads": 2, "kv_num_heads": 2}
    if mask:
        inits.append(init("mask", np.zeros((1, 1), np.float32)))
        names.append("mask")
    nodes.append(N("Attention", names, ["a"], is_causal=causal, **attrs))
    if four_d:
        nodes += [N("Transpose", ["a"], ["at"], perm=[0, 2, 1, 3]),
                  N("Reshape", ["at", "flat"], ["a3"])]
    nodes.append(N("MatMul", ["a3" if four_d else "a", "Wo"], ["y"]))
    return make_model(nodes, [vi("x", ["batch", "seq", 4])], [vi("y", None)], inits, opset=23)


def _prefix_rows(model, m) -> None:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    X = np.random.default_rng(1).standard_normal((2, 20, 4)).astype(np.float32)
    got = m.run(X)
    s = m.stream()
    streamed = np.concatenate([s.step_many(X[0, :3]), s.step(X[0, 3])[None], s.step_many(X[0, 4:])])
    for t in (0, 1, 6, 19):
        want = sess.run(None, {"x": X[:, :t + 1]})[0][:, t]
        assert np.abs(got[:, t] - want).max() <= TOL
        assert np.abs(streamed[t] - want[0]).max() <= TOL


@pytest.mark.parametrize("four_d", [True, False], ids=["BHTD", "BT-hidden"])
def test_causal_attention_streams(tmp_path, four_d):
    model = _graph(1, four_d)
    m, _, rep = check(model, tmp_path)
    assert "CausalAttention" in {n.op for n in m.graph.nodes}
    assert any("4096 steps" in w for w in rep.warnings)
    _prefix_rows(model, m)


@pytest.mark.parametrize("four_d", [True, False], ids=["BHTD", "BT-hidden"])
def test_attention_without_mask_runs_only(tmp_path, four_d):
    model = _graph(0, four_d)
    m, v, _ = check(model, tmp_path, stream=False)
    node = next(n for n in m.graph.nodes if n.op == "SequenceAttention")
    assert not m.streamable and not v.streamed
    with pytest.raises(lstm_infer.NotStreamableError, match=node.name):
        m.stream()


def test_attention_mask_is_refused(tmp_path):
    with pytest.raises(ConversionError, match="attn_mask"):
        convert_onnx(_graph(0, True, mask=True), tmp_path / "m.lstm", verify=False)


torch = pytest.importorskip("torch")


class _CausalSDPA(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(4, 8, batch_first=True)
        self.qkv, self.out = torch.nn.Linear(8, 24), torch.nn.Linear(8, 3)

    def forward(self, x):
        h, _ = self.lstm(x)
        B, T, _ = h.shape
        q, k, v = self.qkv(h).view(B, T, 3, 2, 4).permute(2, 0, 3, 1, 4)
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(a.transpose(1, 2).reshape(B, T, 8))


def test_torch_sdpa_exported_with_attention_op(tmp_path):
    import onnx
    path = str(tmp_path / "m.onnx")
    export_dynamo("test_onnx_attention", "_CausalSDPA", path, (3, 11, 4), opset=23)
    model = onnx.load(path)
    assert "Attention" in {n.op_type for n in model.graph.node}
    report = convert_onnx(path, tmp_path / "m.lstm")
    assert report.verify.ok and report.verify.streamed
    m = lstm_infer.load(tmp_path / "m.lstm")
    assert m.streamable
    _prefix_rows(model, m)
