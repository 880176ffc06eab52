"""SequenceAttention (run()-only attention that looks ahead) against a float64 loop
reference with random weights and several bands, lengths per batch row, the refusal to
stream, and spec refusals. Tolerance 1e-5 max abs on unit-scale data."""
from __future__ import annotations

import numpy as np
import pytest

import lstm_infer
from lstm_infer.builder import GraphBuilder


def reference(q, k, v, H, D, back, ahead, scale):
    """(T, E) each -> (T, E): the op's definition, one query at a time in float64."""
    T = len(q)
    y = np.zeros((T, H * D))
    for t in range(T):
        ss = [s for s in range(T) if (back < 0 or t - s <= back) and (ahead < 0 or s - t <= ahead)]
        for h in range(H):
            c = slice(h * D, (h + 1) * D)
            sc = np.array([scale * q[t, c] @ k[s, c] for s in ss], np.float64)
            p = np.exp(sc - sc.max())
            p /= p.sum()
            y[t, c] = sum(pi * v[s, c] for pi, s in zip(p, ss))
    return y


def build(path, H, D, back, ahead, scale):
    E = H * D
    b = GraphBuilder("q", E)
    b.add_input("k", E)
    b.add_input("v", E)
    b.output(b.add("SequenceAttention", "att", ["q", "k", "v"],
                   {"heads": H, "head_dim": D, "back": back, "ahead": ahead},
                   {"scale": np.array([scale], np.float32)}))
    b.save(path)
    return lstm_infer.load(path)


@pytest.mark.parametrize("H,D,back,ahead", [(1, 3, -1, -1), (2, 2, 1, 2), (4, 1, -1, 1)])
def test_matches_reference(tmp_path, H, D, back, ahead):
    m = build(tmp_path / "a.lstm", H, D, back, ahead, 0.6)
    rng = np.random.default_rng(H)
    E = H * D
    X = rng.standard_normal((2, 11, 3 * E)).astype(np.float32)
    lengths = np.array([11, 6])
    got = m.run(X, lengths=lengths)
    for b, L in enumerate(lengths):
        q, k, v = (X[b, :L, i * E:(i + 1) * E].astype(np.float64) for i in range(3))
        assert np.abs(got[b, :L] - reference(q, k, v, H, D, back, ahead, 0.6)).max() <= 1e-5
        assert not got[b, L:].any()
    assert not m.streamable
    with pytest.raises(lstm_infer.NotStreamableError, match="att"):
        m.stream()


@pytest.mark.parametrize("attrs", [{"back": -2, "ahead": 1}, {"back": 1}, {"back": 0, "ahead": True}])
def test_bad_attributes_are_refused(tmp_path, attrs):
    b = GraphBuilder("q", 2)
    b.add_input("k", 2)
    b.add_input("v", 2)
    with pytest.raises(lstm_infer.ModelFormatError, match="back|ahead"):
        b.add("SequenceAttention", "att", ["q", "k", "v"], {"heads": 1, "head_dim": 2, **attrs},
              {"scale": np.array([1.0], np.float32)})
