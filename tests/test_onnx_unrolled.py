"""Recurrences an exporter unrolled over a fixed length (issue 9, cause 12): folded back into
one recurrent layer when the steps repeat exactly (converters/onnx_unroll.py), else refused
with the reason. torch.onnx.export(dynamo=True) unrolls nn.RNN (it writes nn.LSTM/nn.GRU as
ONNX ops); TorchScript unrolls a hand-written LSTMCell/GRUCell/RNNCell loop.

Each folded model is checked against onnxruntime at the exported length (the only length the
source graph runs), against torch at another length (the folded model is a streaming model
of any length), step by step against run(), and chunked against whole. Tolerance: max abs
error 1e-5 on unit-scale data (observed ~1e-7)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

import lstm_infer  # noqa: E402
from converters import ConversionError, convert_onnx  # noqa: E402

TOL = 1e-5
T_EXPORT = 12


class _Seq(torch.nn.Module):
    """nn.RNN (+ Linear), which dynamo unrolls."""
    def __init__(self, batch_first=True, layers=1, bidirectional=False, nonlinearity="tanh"):
        super().__init__()
        self.rnn = torch.nn.RNN(5, 8, num_layers=layers, batch_first=batch_first,
                                bidirectional=bidirectional, nonlinearity=nonlinearity)
        self.fc = torch.nn.Linear(16 if bidirectional else 8, 3)

    def forward(self, x):
        return self.fc(self.rnn(x)[0])


class _CellLoop(torch.nn.Module):
    """A cell loop written by hand (TorchScript export unrolls it); a Linear per step or only
    on the last step."""
    def __init__(self, kind="lstm", last_only=False):
        super().__init__()
        self.kind, self.last_only = kind, last_only
        self.cell = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell,
                     "rnn": torch.nn.RNNCell}[kind](5, 8)
        self.fc = torch.nn.Linear(8, 2)

    def forward(self, x):
        h = torch.zeros(x.shape[0], 8)
        c = torch.zeros(x.shape[0], 8)
        out = []
        for t in range(x.shape[1]):
            if self.kind == "lstm":
                h, c = self.cell(x[:, t], (h, c))
            else:
                h = self.cell(x[:, t], h)
            out.append(self.fc(h))
        return out[-1] if self.last_only else torch.stack(out, 1)


def _export(tmp_path, module, x, dynamo):
    src = tmp_path / "m.onnx"
    torch.onnx.export(module, (x,), str(src), dynamo=dynamo)
    return src


def _ort(src, x):
    sess = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _check_streaming(m, X):
    """step() over the sequence equals run(); step_many in chunks equals it too."""
    Y = m.run(X)
    s = m.stream()
    steps = np.stack([s.step(x) for x in X])
    np.testing.assert_allclose(steps, Y, rtol=0, atol=1e-6)
    s = m.stream()
    parts = [s.step_many(X[a:a + n]) for a, n in ((0, 1), (1, 4), (5, 2), (7, len(X) - 7))]
    np.testing.assert_allclose(np.concatenate(parts), Y, rtol=0, atol=1e-6)


SEQ_CASES = {
    "rnn-batch-first": (dict(), True),
    "rnn-time-first-2-layers": (dict(batch_first=False, layers=2), False),
    "rnn-relu": (dict(nonlinearity="relu"), True),
}


@pytest.mark.parametrize("case", sorted(SEQ_CASES))
def test_dynamo_unrolled_rnn_folds_into_a_streaming_model(tmp_path, case):
    kwargs, bf = SEQ_CASES[case]
    torch.manual_seed(0)
    mod = _Seq(**kwargs).eval()
    shape = (1, T_EXPORT, 5) if bf else (T_EXPORT, 1, 5)
    src = _export(tmp_path, mod, torch.randn(*shape), dynamo=True)
    rep = convert_onnx(src, tmp_path / "m.lstm")
    assert any("folded the unrolled recurrence" in w for w in rep.warnings)
    assert any(f"exported length of {T_EXPORT} steps" in w for w in rep.warnings)
    assert rep.verify.ok and rep.verify.max_abs_error < TOL
    m = lstm_infer.load(tmp_path / "m.lstm")
    assert [n.op for n in m.graph.nodes].count("RNN") == kwargs.get("layers", 1)
    rng = np.random.default_rng(1)
    # at the exported length: onnxruntime on the source graph
    X = rng.standard_normal((T_EXPORT, 5)).astype(np.float32)
    ref = _ort(src, X[None] if bf else X[:, None])
    np.testing.assert_allclose(m.run(X), ref.reshape(T_EXPORT, 3), rtol=0, atol=TOL)
    # at another length (the source graph cannot run it): torch
    X2 = rng.standard_normal((31, 5)).astype(np.float32)
    with torch.no_grad():
        want = mod(torch.from_numpy(X2[None] if bf else X2[:, None])).numpy().reshape(31, 3)
    np.testing.assert_allclose(m.run(X2), want, rtol=0, atol=TOL)
    _check_streaming(m, X2)


def test_dynamo_unrolled_bidirectional_rnn_folds_into_forward_and_reverse_layers(tmp_path):
    torch.manual_seed(0)
    mod = _Seq(batch_first=False, bidirectional=True).eval()
    src = _export(tmp_path, mod, torch.randn(T_EXPORT, 1, 5), dynamo=True)
    convert_onnx(src, tmp_path / "m.lstm")
    m = lstm_infer.load(tmp_path / "m.lstm")
    rng = np.random.default_rng(2)
    X = rng.standard_normal((T_EXPORT, 5)).astype(np.float32)
    np.testing.assert_allclose(m.run(X), _ort(src, X[:, None]).reshape(T_EXPORT, 3), rtol=0, atol=TOL)
    X2 = rng.standard_normal((20, 5)).astype(np.float32)
    with torch.no_grad():
        want = mod(torch.from_numpy(X2[:, None])).numpy().reshape(20, 3)
    np.testing.assert_allclose(m.run(X2), want, rtol=0, atol=TOL)
    with pytest.raises(lstm_infer.NotStreamableError):
        m.stream()


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_torchscript_cell_loop_folds_into_one_recurrent_layer(tmp_path, kind):
    torch.manual_seed(0)
    mod = _CellLoop(kind).eval()
    src = _export(tmp_path, mod, torch.randn(1, T_EXPORT, 5), dynamo=False)
    rep = convert_onnx(src, tmp_path / "m.lstm")
    assert rep.verify.ok and rep.verify.max_abs_error < TOL
    m = lstm_infer.load(tmp_path / "m.lstm")
    ops = [n.op for n in m.graph.nodes]
    assert ops.count(kind.upper()) == 1, ops
    rng = np.random.default_rng(3)
    X = rng.standard_normal((T_EXPORT, 5)).astype(np.float32)
    np.testing.assert_allclose(m.run(X), _ort(src, X[None])[0], rtol=0, atol=TOL)
    X2 = 2 * rng.standard_normal((40, 5)).astype(np.float32)
    with torch.no_grad():
        want = mod(torch.from_numpy(X2[None])).numpy()[0]
    np.testing.assert_allclose(m.run(X2), want, rtol=0, atol=TOL)
    _check_streaming(m, X2)
    # state carried across calls: two halves streamed == whole
    s = m.stream()
    first = s.step_many(X2[:17])
    np.testing.assert_allclose(np.concatenate([first, s.step_many(X2[17:])]), want, rtol=0, atol=TOL)


def test_cell_loop_returning_only_the_last_step_streams_with_prefix_semantics(tmp_path):
    torch.manual_seed(0)
    mod = _CellLoop("gru", last_only=True).eval()
    src = _export(tmp_path, mod, torch.randn(1, T_EXPORT, 5), dynamo=False)
    convert_onnx(src, tmp_path / "m.lstm")
    m = lstm_infer.load(tmp_path / "m.lstm")
    X = np.random.default_rng(4).standard_normal((25, 5)).astype(np.float32)
    Y = m.run(X)
    for t in (0, 11, 24):   # output at step t = the source model on the sequence ended at t
        with torch.no_grad():
            want = mod(torch.from_numpy(X[None, :t + 1])).numpy()[0]
        np.testing.assert_allclose(Y[t], want, rtol=0, atol=TOL)
    np.testing.assert_allclose(Y[T_EXPORT - 1], _ort(src, X[None, :T_EXPORT])[0], rtol=0, atol=TOL)


def test_a_step_whose_weights_differ_is_refused_naming_the_node(tmp_path):
    torch.manual_seed(0)
    src = _export(tmp_path, _CellLoop("lstm").eval(), torch.randn(1, T_EXPORT, 5), dynamo=False)
    model = onnx.load(str(src))
    w = next(t for t in model.graph.initializer if t.name == "cell.weight_hh")
    arr = onnx.numpy_helper.to_array(w).copy()
    arr[0, 0] += 0.5
    model.graph.initializer.append(onnx.numpy_helper.from_array(arr, "edited_weight_hh"))
    node = next(n for n in model.graph.node if n.op_type == "Gemm" and n.name.startswith("/cell_5/")
                and "cell.weight_hh" in n.input)
    node.input[list(node.input).index("cell.weight_hh")] = "edited_weight_hh"
    with pytest.raises(ConversionError, match="does not repeat exactly") as e:
        convert_onnx(model, tmp_path / "m.lstm")
    assert repr(node.name) in str(e.value) and "step 5" in str(e.value)
    assert "different constant" in str(e.value)
    assert not (tmp_path / "m.lstm").exists()


class _NotACell(torch.nn.Module):
    """Recurrences that are no standard cell: h = tanh(W x + h) * sigmoid(U x) (its state
    is what the step returns), h = tanh(W x) * sigmoid(h) (its state passes a sigmoid
    before the next step)."""
    def __init__(self, gated_state, h0=0.0):
        super().__init__()
        self.gated_state, self.h0 = gated_state, h0
        self.lin, self.lin2 = torch.nn.Linear(5, 8), torch.nn.Linear(5, 8)

    def forward(self, x):
        h = torch.full((x.shape[0], 8), self.h0)
        out = []
        for t in range(x.shape[1]):
            if self.gated_state:
                h = torch.tanh(self.lin(x[:, t])) * torch.sigmoid(h)
            else:
                h = torch.tanh(self.lin(x[:, t]) + h) * torch.sigmoid(self.lin2(x[:, t]))
            out.append(h)
        return torch.stack(out, 1)


@pytest.mark.parametrize("gated_state,h0,why", [
    (False, 0.0, "1 state tensor(s) of sizes [8] and activations ['Sigmoid', 'Tanh']"),
    (True, 0.0, "carries its state through ['Sigmoid']"),
    (False, 1.0, "an initial state other than zeros is not folded")])
def test_a_recurrence_that_does_not_fold_is_refused_with_its_form(tmp_path, gated_state, h0, why):
    src = _export(tmp_path, _NotACell(gated_state, h0).eval(), torch.randn(1, T_EXPORT, 5), dynamo=False)
    with pytest.raises(ConversionError, match="only those cell forms fold|not folded") as e:
        convert_onnx(src, tmp_path / "m.lstm")
    assert why in str(e.value)
    assert not (tmp_path / "m.lstm").exists()
