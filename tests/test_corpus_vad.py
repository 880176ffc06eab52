"""silero-vad (faster-whisper's silero_vad_v6.onnx) from the public corpus.

The graph: input (seq_len, 576) = frames of 512 samples with 64 samples of context, h and
c (1, 1, 128) in, speech_probs (seq_len,), hn, cn out. Each frame goes through a conv
front end (reflect Pad, an STFT-like Conv, magnitude, four Conv+Relu), then an LSTM(128)
whose sequence axis is seq_len, then a kernel-1 Conv over time and a Sigmoid.
faster-whisper calls it with up to 10000 frames per call and carries h/c across calls,
so seq_len is time and the model streams one frame per step."""
import numpy as np
import pytest

pytest.importorskip("onnxruntime")
import onnxruntime as ort  # noqa: E402

import lstm_infer  # noqa: E402
from benchmarks import corpus  # noqa: E402
from converters import convert_onnx  # noqa: E402

TOL = 1e-4
T = 300


@pytest.fixture(scope="module")
def vad(tmp_path_factory):
    try:
        path = corpus.fetch("silero_vad")
    except corpus.Unavailable as e:
        pytest.skip(f"corpus model silero_vad unavailable (no package index): {e}")
    out = tmp_path_factory.mktemp("vad") / "vad.lstm"
    rep = convert_onnx(path, out)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return lstm_infer.load(out), rep, sess


def _audio(seed=0):
    """Frames like faster-whisper's: 512 new samples after the previous 64 (a waveform)."""
    rng = np.random.default_rng(seed)
    t = np.arange(T * 512 + 64) / 16000.0
    wave = 0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 0.7 * t) > 0)
    wave = (wave + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    return np.stack([wave[k * 512:k * 512 + 576] for k in range(T)])


def _ort(sess, X, h=None, c=None):
    h = np.zeros((1, 1, 128), np.float32) if h is None else h
    c = np.zeros((1, 1, 128), np.float32) if c is None else c
    return sess.run(None, {"input": X, "h": h, "c": c})


def test_converts_and_verifies(vad):
    m, rep, _ = vad
    assert rep.verify.ok and max(rep.verify.run_max_abs.values()) <= TOL, rep.verify
    # the cell state grows to ~158: its final value is compared relative to that scale
    assert rep.verify.stream_max_rel["cn (state)"] <= TOL, rep.verify
    assert m.streamable and m.input_size == 576
    meta = m.provenance["onnx"]
    assert {(s["input"], s["output"]) for s in meta["state"]} == {("h", "hn"), ("c", "cn")}
    assert meta["time_axis"] == 0
    assert "Conv1d" in {n.op for n in m.graph.nodes}


def test_run_matches_onnxruntime(vad):
    m, _, sess = vad
    X = _audio()
    probs, hn, cn = _ort(sess, X)
    Y = m.run(X)
    assert np.abs(Y.reshape(-1) - probs).max() <= TOL
    assert probs.max() - probs.min() > 1e-3  # the input is not all silence to the model


def test_streamed_frames_match_onnxruntime_frame_by_frame(vad):
    m, _, sess = vad
    X = _audio(1)
    s = m.stream()
    h = c = None
    err = 0.0
    for x in X:
        p, h, c = _ort(sess, x[None], h, c)
        err = max(err, float(np.abs(s.step(x).reshape(-1) - p).max()))
    assert err <= TOL
    st = s.get_state()
    hs = [k for k in st if k.endswith(".h")]
    cs = [k for k in st if k.endswith(".c")]
    assert len(hs) == len(cs) == 1
    assert np.abs(st[hs[0]] - h.reshape(-1)).max() <= TOL
    # the cell state is unbounded (it reaches tens here): compared relative to its scale
    c = c.reshape(-1)
    assert np.abs(st[cs[0]] - c).max() <= TOL * max(1.0, float(np.abs(c).max()))


def test_chunked_equals_whole(vad):
    m, _, sess = vad
    X = _audio(2)
    s = m.stream()
    whole = s.step_many(X)
    s.reset()
    parts, t, k = [], 0, 0
    while t < T:
        n = (1, 7, 64, 3)[k % 4]
        parts.append(s.step_many(X[t:t + n]))
        t, k = t + n, k + 1
    assert np.array_equal(np.concatenate(parts), whole)
    # and the state carried across onnxruntime calls gives the same as the engine's
    p1, h, c = _ort(sess, X[:100])
    p2, _, _ = _ort(sess, X[100:], h, c)
    assert np.abs(whole.reshape(-1) - np.concatenate([p1, p2])).max() <= TOL
