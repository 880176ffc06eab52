"""History (the last K inputs, D steps apart) against a numpy reference on every path, and
a causal convolution over time built from it, against a direct float64 convolution."""
import numpy as np
import pytest

import lstm_infer
from lstm_infer.builder import GraphBuilder

TOL = 1e-5


def _reference(X, K, D):
    """X (T, F) -> (T, K*F): frame i of step t is X[t - (K-1-i)*D], zero before step 0."""
    T, F = X.shape
    out = np.zeros((T, K * F))
    for t in range(T):
        for i in range(K):
            s = t - (K - 1 - i) * D
            if s >= 0:
                out[t, i * F:(i + 1) * F] = X[s]
    return out


def _history_model(tmp_path, F, K, D):
    b = GraphBuilder("x", F)
    b.output(b.add("History", "hist", ["x"], {"size": F, "frames": K, "dilation": D}))
    p = tmp_path / f"h{F}_{K}_{D}.lstm"
    b.save(p)
    return lstm_infer.load(p)


@pytest.mark.parametrize("F,K,D", [(3, 2, 1), (4, 3, 1), (2, 4, 3), (5, 2, 6)])
def test_history_every_path(tmp_path, F, K, D):
    m = _history_model(tmp_path, F, K, D)
    rng = np.random.default_rng(F * 100 + K * 10 + D)
    X = rng.standard_normal((3, 25, F)).astype(np.float32)
    ref = np.stack([_reference(x, K, D) for x in X])
    np.testing.assert_array_equal(m.run(X), ref.astype(np.float32))
    s = m.stream()
    np.testing.assert_array_equal(np.array([s.step(x) for x in X[0]]), ref[0])
    s.reset()
    chunks = [s.step_many(X[1, :7]), s.step_many(X[1, 7:8]), s.step_many(X[1, 8:])]
    np.testing.assert_array_equal(np.concatenate(chunks), ref[1])
    pool = m.streams(3)
    np.testing.assert_array_equal(np.array([pool.step(X[:, t]) for t in range(25)]).transpose(1, 0, 2), ref)
    assert set(s.get_state()) == {"hist.past"}
    # state round trip: continue from a saved state
    s.reset()
    s.step_many(X[2, :10])
    saved = s.get_state()
    tail = s.step_many(X[2, 10:])
    s.set_state(saved)
    np.testing.assert_array_equal(s.step_many(X[2, 10:]), tail)


def test_history_honours_lengths(tmp_path):
    m = _history_model(tmp_path, 2, 3, 1)
    X = np.random.default_rng(0).standard_normal((2, 9, 2)).astype(np.float32)
    Y = m.run(X, lengths=np.array([9, 4]))
    np.testing.assert_array_equal(Y[1, :4], _reference(X[1], 3, 1)[:4])
    assert not Y[1, 4:].any()


def test_causal_conv_over_time_from_history_and_conv1d(tmp_path):
    """Conv2d over (time, freq) with kernel (kt, kf), zero padding kt-1 in front in time:
    History(kt) -> a per-step Conv1d over freq with channels C*kt (layout (C, kt))."""
    rng = np.random.default_rng(1)
    C, Fq, M, kt, kf = 2, 6, 3, 3, 3
    W = rng.uniform(-0.5, 0.5, (M, C, kt, kf)).astype(np.float32)
    bias = rng.uniform(-0.5, 0.5, M).astype(np.float32)
    b = GraphBuilder("x", C * Fq)
    h = b.add("History", "hist", ["x"], {"size": C * Fq, "frames": kt})
    # (kt, C, Fq) -> (C, kt, Fq): channel c*kt + dt
    idx = np.arange(kt * C * Fq).reshape(kt, C, Fq).transpose(1, 0, 2).reshape(-1)
    g = b.add("Gather", "to_channels", [h], {"in_size": kt * C * Fq, "out_size": kt * C * Fq},
              {"index": idx.astype(np.float32)})
    y = b.add("Conv1d", "conv", [g], {"in_channels": C * kt, "in_length": Fq, "out_channels": M,
                                      "kernel_size": kf, "pad_left": 1, "pad_right": 1},
              {"W": W.reshape(M, C * kt, kf), "bias": bias})
    b.output(y)
    p = tmp_path / "causal.lstm"
    b.save(p)
    m = lstm_infer.load(p)
    T = 20
    X = rng.standard_normal((T, C, Fq))
    Xp = np.concatenate([np.zeros((kt - 1, C, Fq)), X])
    Xp = np.pad(Xp, ((0, 0), (0, 0), (1, 1)))
    ref = np.zeros((T, M, Fq))
    for t in range(T):
        for f in range(Fq):
            ref[t, :, f] = bias + np.einsum("mcij,cij->m", W, Xp[t:t + kt, :, f:f + kf].transpose(1, 0, 2))
    Xf = X.reshape(T, C * Fq).astype(np.float32)
    np.testing.assert_allclose(m.run(Xf), ref.reshape(T, -1), atol=TOL)
    s = m.stream()
    np.testing.assert_allclose(np.array([s.step(x) for x in Xf]), ref.reshape(T, -1), atol=TOL)
