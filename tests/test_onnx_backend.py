"""The ONNX package's own backend node test cases for LSTM, GRU and RNN
(onnx/backend/test/case/node/{lstm,gru,rnn}.py: test_lstm_*, test_gru_*, test_rnn_*,
test_simple_rnn_*). The pip wheel does not ship their data folders, so the cases are
generated in memory from the same code that writes model.onnx and test_data_set_0/*.pb;
each converted model must reproduce the expected outputs, with weights bound via `fix`."""
from __future__ import annotations

import importlib

import numpy as np
import pytest

import lstm_infer
from converters.onnx_import import convert_onnx
from converters.onnx_verify import _to_ours, reconstruct, verify_model


def _cases():
    import onnx.backend.test.case.node as node_cases
    before = len(node_cases._NodeTestCases)
    old = node_cases._TargetOpType
    node_cases._TargetOpType = None
    try:
        for mod in ("lstm", "gru", "rnn"):
            name = f"onnx.backend.test.case.node.{mod}"
            m = importlib.import_module(name)
            if len(node_cases._NodeTestCases) == before:  # already imported elsewhere: re-run
                importlib.reload(m)
            before = len(node_cases._NodeTestCases)
    finally:
        node_cases._TargetOpType = old
    seen = {}
    for c in node_cases._NodeTestCases:
        if c.name.startswith(("test_lstm_", "test_gru_", "test_rnn_", "test_simple_rnn_")):
            seen.setdefault(c.name, c)
    return [seen[k] for k in sorted(seen)]


CASES = _cases()
def test_all_cases_found():
    names = {c.name for c in CASES}
    assert len(names) >= 18 and {"test_lstm_with_peepholes", "test_gru_seq_length",
                                 "test_simple_rnn_bidirectional"} <= names


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_backend_case(tmp_path, case):
    ins, outs = case.data_sets[0]
    names = [i.name for i in case.model.graph.input]
    fix = {n: v for n, v in zip(names, ins) if n not in ("X", "sequence_lens")}
    path = tmp_path / "m.lstm"
    convert_onnx(case.model, path, verify=False, fix=fix)
    m = lstm_infer.load(path)
    meta = m.provenance["onnx"]
    X = ins[0]
    dims = next(i for i in meta["inputs"] if i["name"] == "X")["dims"]
    lens = ins[names.index("sequence_lens")] if "sequence_lens" in names else None
    Xo = _to_ours(X, dims)
    y = m.run(Xo, lengths=lens)
    ys = y if isinstance(y, dict) else {meta["outputs"][0]["name"]: y}
    L = np.asarray(lens) if lens is not None else np.full(Xo.shape[0], Xo.shape[1])
    onames = [o.name for o in case.model.graph.output]
    for e in meta["outputs"]:
        got = reconstruct(ys[e["name"]], e, L)
        want = outs[onames.index(e["name"])]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # and against onnxruntime on random data, streamed where possible
    v = verify_model(m, case.model, fix=fix)
    assert v.max_abs_error <= 1e-5, str(v)
