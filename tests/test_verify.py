"""Verification that never lies: `convert_onnx` / `convert_file` / `convert_torch` raise
`VerificationError` (a ConversionError) when the converted model disagrees with its source
and leave the output path alone; the ONNX verifier catches a wrong weight, works when the
graph's constant initial states fix the batch size, verifies at the exported length when
the file bakes the sequence length in (and says so), and compares long sequences too."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import helper

import lstm_infer
from converters import ConversionError, VerificationError, convert_file, convert_onnx
from converters.onnx_import import verify_onnx
from converters.onnx_ops import recurrent as onnx_recurrent
from lstm_infer.fileformat import read_model, write_model

from onnx_helpers import init, make_model, rnd, vi

N = helper.make_node
RNG = np.random.default_rng(21)
I, H = 3, 4


def lstm_model(x_dims=("seq", "batch", I), h0=None, extra_nodes=(), out="Y", inits=()):
    ins = ["x", "W", "R", "B"] + (["", "h0"] if h0 is not None else [])
    nodes = [N("LSTM", ins, ["Y"], hidden_size=H, name="the_lstm")] + list(extra_nodes)
    ws = [init("W", rnd(RNG, 1, 4 * H, I, scale=0.5)), init("R", rnd(RNG, 1, 4 * H, H, scale=0.5)),
          init("B", rnd(RNG, 1, 8 * H, scale=0.5))] + ([init("h0", h0)] if h0 is not None else [])
    return make_model(nodes, [vi("x", list(x_dims))], [vi(out, None)], ws + list(inits), opset=13)


@pytest.fixture
def wrong_weight(monkeypatch):
    """The ONNX recurrent converter emits one input weight off by 0.05."""
    real = onnx_recurrent.onnx_recurrent_weights

    def bad(*a, **k):
        w = real(*a, **k)
        w["W_ih"] = np.array(w["W_ih"], copy=True)
        w["W_ih"][0, 0] += 0.05
        return w
    monkeypatch.setattr(onnx_recurrent, "onnx_recurrent_weights", bad)


def test_wrong_conversion_raises_and_writes_nothing(tmp_path, wrong_weight):
    model = lstm_model()
    out = tmp_path / "m.lstm"
    with pytest.raises(VerificationError, match="above the tolerance.*was not written") as e:
        convert_onnx(model, out)
    assert isinstance(e.value, ConversionError) and not out.exists()
    assert not e.value.report.verify.ok and e.value.report.verify.max_abs_error > 1e-4
    assert not list(tmp_path.iterdir())               # no temporary file left either
    src = tmp_path / "m.onnx"
    src.write_bytes(model.SerializeToString())
    out.write_bytes(b"an older file")
    with pytest.raises(ConversionError, match="verification"):
        convert_file(src, out, dtype="int8")
    assert out.read_bytes() == b"an older file"      # left as it was
    convert_onnx(model, out, verify=False)             # asked for: written unverified
    assert lstm_infer.load(out).input_size == I


def test_cli_convert_exits_1_on_a_wrong_conversion(tmp_path, wrong_weight):
    from lstm_infer.cli import cli
    src = tmp_path / "m.onnx"
    src.write_bytes(lstm_model().SerializeToString())
    r = CliRunner().invoke(cli, ["convert", str(src), "-o", str(tmp_path / "m.lstm")])
    assert r.exit_code == 1 and "ABOVE TOLERANCE" in r.output and "was not written" in r.output
    assert not (tmp_path / "m.lstm").exists()


def test_verifier_catches_one_corrupted_weight_in_the_file(tmp_path):
    model = lstm_model()
    path = tmp_path / "m.lstm"
    convert_onnx(model, path)
    assert verify_onnx(path, model).ok
    raw = read_model(path)
    tensors = {k: np.array(v) for k, v in raw.tensors.items()}
    name = next(k for k in tensors if k.endswith("W_hh"))
    tensors[name][1, 2] += 0.01
    write_model(tmp_path / "bad.lstm", raw.graph, tensors, raw.provenance)
    v = verify_onnx(tmp_path / "bad.lstm", model)
    assert not v.ok and v.max_abs_error > 1e-4, str(v)


def test_long_sequences_are_compared(tmp_path):
    model = lstm_model()
    rep = convert_onnx(model, tmp_path / "m.lstm")
    assert rep.verify.ok and any("7 and 64 steps" in n for n in rep.verify.notes), str(rep.verify)


@pytest.mark.parametrize("batch", [1, 2])
def test_batch_fixed_by_constant_initial_state(tmp_path, batch):
    """initial_h an initializer of batch 1 or 2: onnxruntime accepts only that batch."""
    h0 = np.repeat(rnd(RNG, 1, 1, H), batch, axis=1)
    rep = convert_onnx(lstm_model(h0=h0), tmp_path / "m.lstm")
    assert rep.verify.ok and rep.verify.stream_max_abs
    if batch > 1:
        assert any(f"batch {batch}" in n for n in rep.verify.notes)


def test_sequence_length_baked_in_is_verified_at_that_length(tmp_path):
    """A static export: x [1, 10, I], a Reshape to [10, H] with the length baked in. Verified
    at T=10 (onnxruntime runs nothing else), the report says so, and the converted model
    runs any length, agreeing with the same weights in a dynamic graph."""
    nodes = [N("Squeeze", ["Y", "ax"], ["ys"]), N("Reshape", ["ys", "shape"], ["out"])]
    inits = [init("ax", np.array([1], np.int64)), init("shape", np.array([10, H], np.int64))]
    model = lstm_model(x_dims=(10, 1, I), extra_nodes=nodes, out="out", inits=inits)
    rep = convert_onnx(model, tmp_path / "m.lstm")
    assert rep.verify.ok and any("fixes the sequence length at 10" in n and "any length" in n
                                 for n in rep.verify.notes), str(rep.verify)
    X = rnd(RNG, 37, 1, I)
    want = _run_dynamic(model, X)[:, 0, 0]
    got = lstm_infer.load(tmp_path / "m.lstm").run(X[:, 0, :])
    assert np.abs(got - want).max() <= 1e-5


def _run_dynamic(model, X):
    """onnxruntime on the LSTM node of `model` alone, the input declared dynamic: Y."""
    dynamic = helper.make_model(helper.make_graph(
        [model.graph.node[0]], "d", [vi("x", ["t", "b", I])], [vi("Y", None)],
        list(model.graph.initializer)), opset_imports=[helper.make_opsetid("", 13)])
    dynamic.ir_version = 8
    sess = ort.InferenceSession(dynamic.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": X})[0]


def test_sequence_length_baked_into_a_reshape_of_a_dynamic_graph(tmp_path):
    """The input declares a dynamic length but a Reshape has it written in ([6, -1, H], as
    torch's dynamo exporter does): the 6 is read as the time axis (with a warning), the
    source is verified at 6 steps (onnxruntime refuses others) and the report says so."""
    nodes = [N("Reshape", ["Y", "shape"], ["out"])]
    model = lstm_model(extra_nodes=nodes, out="out",
                       inits=[init("shape", np.array([6, -1, H], np.int64))])
    rep = convert_onnx(model, tmp_path / "m.lstm")
    assert any("sequence length 6 written into" in w for w in rep.warnings), str(rep)
    assert any("only at that length" in n for n in rep.verify.notes), str(rep.verify)
    X = rnd(RNG, 23, 2, I)
    want = _run_dynamic(model, X)[:, 0]                            # (T, B, H)
    got = lstm_infer.load(tmp_path / "m.lstm").run(X.transpose(1, 0, 2))   # (B, T, H)
    assert np.abs(got.transpose(1, 0, 2) - want).max() <= 1e-5


def test_convert_torch_raises_when_verification_fails(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from converters import convert_torch, torch_verify
    from converters.report import VerifyReport
    from torch_models import RecurrentHead

    def failing(path, *a, **k):
        return VerifyReport(source="torch", run_max_abs={"y": 0.5})
    monkeypatch.setattr(torch_verify, "verify_against", failing)
    out = tmp_path / "t.lstm"
    with pytest.raises(VerificationError, match="0.5"):
        convert_torch(RecurrentHead("gru", 3, 4, batch_first=True), out,
                      example_input=torch.randn(2, 5, 3))
    assert not out.exists() and not list(tmp_path.iterdir())
