"""Graphs that take one frame per call (no time axis; the recurrent state goes in as
graph inputs and comes back as outputs; the recurrent op is fed a length-1 sequence):
converted into a streaming model whose step() is one call of the source graph
(converters/onnx_frames.py), checked against onnxruntime called frame by frame with the
state fed back."""
import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper

import lstm_infer
from converters import ConversionError
from converters.onnx_import import convert_onnx
from onnx_helpers import init, make_model, rnd, vi

N = helper.make_node
TOL = 1e-5


def _rec_inits(rng, kind, I, H, D=1):
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[kind]
    return [init("W", rnd(rng, D, G * H, I, scale=0.4)), init("R", rnd(rng, D, G * H, H, scale=0.4)),
            init("B", rnd(rng, D, 2 * G * H, scale=0.2))]


def lstm_frame_model(I=6, H=5, O=2, seed=0, batch=False, make_seq="unsqueeze"):
    """x [1, I] (or [batch, I]) -> length-1 sequence -> LSTM(h, c) -> Gemm -> y; hn, cn out."""
    rng = np.random.default_rng(seed)
    bdim = "batch" if batch else 1
    inits = _rec_inits(rng, "LSTM", I, H) + [
        init("ax0", np.array([0], np.int64)), init("ax01", np.array([0, 1], np.int64)),
        init("Wo", rnd(rng, H, O, scale=0.5)), init("bo", rnd(rng, O)),
        init("shape", np.array([1, 1, I], np.int64))]
    seq = (N("Unsqueeze", ["x", "ax0"], ["xs"]) if make_seq == "unsqueeze"
           else N("Reshape", ["x", "shape"], ["xs"]))
    nodes = [seq,
             N("LSTM", ["xs", "W", "R", "B", "", "h", "c"], ["Y", "hn", "cn"], hidden_size=H),
             N("Squeeze", ["Y", "ax01"], ["ys"]),
             N("Gemm", ["ys", "Wo", "bo"], ["y"])]
    x_dims = [bdim, I] if make_seq == "unsqueeze" else [I]
    return make_model(nodes, [vi("x", x_dims), vi("h", [1, bdim, H]), vi("c", [1, bdim, H])],
                      [vi("y", None), vi("hn", [1, bdim, H]), vi("cn", [1, bdim, H])], inits)


def ort_frames(model, X, state_names, B=None):
    """onnxruntime called once per frame, state outputs fed back; X (T, *frame shape)."""
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {}
    for i in sess.get_inputs():
        if i.name != "x":
            feeds[i.name] = np.zeros([B if not isinstance(d, int) else d for d in i.shape], np.float32)
    outs = []
    for x in X:
        feeds["x"] = x
        o = dict(zip([v.name for v in sess.get_outputs()], sess.run(None, feeds)))
        outs.append(o)
        for a, b in state_names:
            feeds[a] = o[b]
    return outs


def _convert(model, tmp_path):
    rep = convert_onnx(model, tmp_path / "f.lstm")
    assert rep.verify.ok, rep.verify
    m = lstm_infer.load(tmp_path / "f.lstm")
    meta = m.provenance["onnx"]
    assert meta["frame_call"] and meta["time_axis"] is None
    assert m.streamable
    return m, meta


@pytest.mark.parametrize("make_seq", ["unsqueeze", "reshape"])
def test_lstm_one_frame_per_call(tmp_path, make_seq):
    model = lstm_frame_model(make_seq=make_seq)
    m, meta = _convert(model, tmp_path)
    assert {(s["input"], s["output"]) for s in meta["state"]} == {("h", "hn"), ("c", "cn")}
    X = np.random.default_rng(5).standard_normal((200, 6)).astype(np.float32)
    shape = (1, 6) if make_seq == "unsqueeze" else (6,)
    ref = ort_frames(model, X.reshape((200,) + shape), [("h", "hn"), ("c", "cn")])
    s = m.stream()
    ys = np.stack([s.step(x) for x in X])
    want = np.stack([r["y"].reshape(-1) for r in ref])
    assert np.abs(ys - want).max() <= TOL
    st = s.get_state()
    (lstm_node,) = [n.name for n in m.graph.nodes if n.op == "LSTM"]
    assert np.abs(st[f"{lstm_node}.h"] - ref[-1]["hn"].reshape(-1)).max() <= TOL
    assert np.abs(st[f"{lstm_node}.c"] - ref[-1]["cn"].reshape(-1)).max() <= TOL
    assert np.abs(m.run(X) - want).max() <= TOL
    s.reset()
    assert np.array_equal(np.concatenate([s.step_many(X[:33]), s.step_many(X[33:])]), ys)


def test_batch_axis_in_a_frame_graph(tmp_path):
    model = lstm_frame_model(batch=True, seed=1)
    m, meta = _convert(model, tmp_path)
    assert meta["batch_axis"] == 0
    X = np.random.default_rng(6).standard_normal((2, 50, 6)).astype(np.float32)
    ref = ort_frames(model, X.transpose(1, 0, 2), [("h", "hn"), ("c", "cn")], B=2)
    want = np.stack([r["y"] for r in ref], axis=1)      # (B, T, O)
    assert np.abs(m.run(X) - want).max() <= TOL


@pytest.mark.parametrize("kind", ["GRU", "RNN"])
def test_gru_and_rnn_frames(tmp_path, kind):
    """x [I] -> Reshape [1, 1, I] -> GRU/RNN(h) -> Y reshaped to [H]; hn out."""
    rng = np.random.default_rng(2)
    I, H = 4, 7
    inits = _rec_inits(rng, kind, I, H) + [init("s3", np.array([1, 1, I], np.int64)),
                                           init("s1", np.array([H], np.int64))]
    nodes = [N("Reshape", ["x", "s3"], ["xs"]),
             N(kind, ["xs", "W", "R", "B", "", "h"], ["Y", "hn"], hidden_size=H),
             N("Reshape", ["Y", "s1"], ["y"])]
    model = make_model(nodes, [vi("x", [I]), vi("h", [1, 1, H])], [vi("y", None), vi("hn", [1, 1, H])],
                       inits)
    m, meta = _convert(model, tmp_path)
    X = rng.standard_normal((120, I)).astype(np.float32)
    ref = ort_frames(model, X, [("h", "hn")])
    s = m.stream()
    assert np.abs(np.stack([s.step(x) for x in X]) - np.stack([r["y"] for r in ref])).max() <= TOL


def test_bidirectional_frames_step_both_directions_forwards(tmp_path):
    """One step per call with the state passed in: a reverse direction over a length-1
    sequence is a step from its state, so the converted model streams."""
    rng = np.random.default_rng(3)
    I, H = 3, 4
    inits = _rec_inits(rng, "LSTM", I, H, D=2) + [init("ax0", np.array([0], np.int64)),
                                                  init("s", np.array([1, 2 * H], np.int64))]
    nodes = [N("Unsqueeze", ["x", "ax0"], ["xs"]),
             N("LSTM", ["xs", "W", "R", "B", "", "h", "c"], ["Y", "hn", "cn"], hidden_size=H,
               direction="bidirectional"),
             N("Reshape", ["Y", "s"], ["y"])]
    model = make_model(nodes, [vi("x", [1, I]), vi("h", [2, 1, H]), vi("c", [2, 1, H])],
                       [vi("y", None), vi("hn", [2, 1, H]), vi("cn", [2, 1, H])], inits)
    m, meta = _convert(model, tmp_path)
    X = rng.standard_normal((60, 1, I)).astype(np.float32)
    ref = ort_frames(model, X, [("h", "hn"), ("c", "cn")])
    s = m.stream()
    got = np.stack([s.step(x.reshape(-1)) for x in X])
    assert np.abs(got - np.stack([r["y"].reshape(-1) for r in ref])).max() <= TOL


def test_frame_graph_without_state_inputs_is_not_a_stream(tmp_path):
    """Each call restarts the LSTM from zeros: not a streaming model; the error says so."""
    rng = np.random.default_rng(4)
    inits = _rec_inits(rng, "LSTM", 3, 4) + [init("ax0", np.array([0], np.int64))]
    nodes = [N("Unsqueeze", ["x", "ax0"], ["xs"]),
             N("LSTM", ["xs", "W", "R", "B"], ["Y"], hidden_size=4)]
    model = make_model(nodes, [vi("x", [1, 3])], [vi("Y", None)], inits)
    with pytest.raises(ConversionError, match="not passed in and out"):
        convert_onnx(model, tmp_path / "x.lstm", verify=False)


def test_sequence_graph_is_not_read_as_frames(tmp_path):
    """A graph with a time axis keeps the ordinary conversion (no frame_call)."""
    rng = np.random.default_rng(5)
    inits = _rec_inits(rng, "LSTM", 3, 4)
    nodes = [N("LSTM", ["x", "W", "R", "B", "", "h", "c"], ["Y", "hn", "cn"], hidden_size=4)]
    model = make_model(nodes, [vi("x", ["seq", 1, 3]), vi("h", [1, 1, 4]), vi("c", [1, 1, 4])],
                       [vi("Y", None), vi("hn", [1, 1, 4]), vi("cn", [1, 1, 4])], inits)
    convert_onnx(model, tmp_path / "s.lstm")
    meta = lstm_infer.load(tmp_path / "s.lstm").provenance["onnx"]
    assert not meta.get("frame_call") and meta["time_axis"] == 0

