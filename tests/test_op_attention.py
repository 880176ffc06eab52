"""AttentionPool (online softmax over time) and CausalAttention (multi-head attention over a
K/V window) against float64 numpy references on every path: run() (batched, lengths),
step(), chunked step_many (state carried across chunks), streams, state round trip; the
full-attention max_len refusal (return code 3) leaves the state untouched.
Tolerance: 1e-5 max abs on unit-scale data."""
import numpy as np
import pytest

import lstm_infer
from lstm_infer.builder import GraphBuilder

TOL = 1e-5


def pool_reference(s, X):
    """Row t: softmax(s[:t+1]) weighted sum of X[:t+1] (the prefix result)."""
    s, X = s.astype(np.float64)[:, 0], X.astype(np.float64)
    out = np.empty_like(X)
    for t in range(len(X)):
        a = np.exp(s[:t + 1] - s[:t + 1].max())
        out[t] = (a / a.sum()) @ X[:t + 1]
    return out


def attention_reference(q, k, v, H, W, scale):
    """Row t: per head, softmax(scale q_t . k_s) over s in (t-W, t], weighted sum of v_s."""
    q, k, v = (a.astype(np.float64) for a in (q, k, v))
    T, E = q.shape
    D = E // H
    out = np.empty((T, E))
    for t in range(T):
        lo = max(0, t - W + 1)
        for h in range(H):
            c = slice(h * D, (h + 1) * D)
            sc = scale * k[lo:t + 1, c] @ q[t, c]
            a = np.exp(sc - sc.max())
            out[t, c] = (a / a.sum()) @ v[lo:t + 1, c]
    return out


def _save(tmp_path, b, name):
    p = tmp_path / name
    b.save(p)
    return lstm_infer.load(p)


def _pool_model(tmp_path, F):
    b = GraphBuilder("s", 1)
    b.add_input("x", F)
    b.output(b.add("AttentionPool", "pool", ["s", "x"], {"size": F}))
    return _save(tmp_path, b, f"pool{F}.lstm")


def _every_path(m, X, ref, state_keys):
    """run/step/step_many (chunks)/streams/state round trip of a model on X (B, T, I)."""
    np.testing.assert_allclose(m.run(X), ref, atol=TOL)
    s = m.stream()
    steps = np.array([s.step(x) for x in X[0]])
    np.testing.assert_allclose(steps, ref[0], atol=TOL)
    s.reset()
    chunks = np.concatenate([s.step_many(X[0, :7]), s.step_many(X[0, 7:8]), s.step_many(X[0, 8:])])
    np.testing.assert_array_equal(chunks, steps)  # the sequence kernels share the step's arithmetic
    pool = m.streams(X.shape[0])
    got = np.array([pool.step(X[:, t]) for t in range(X.shape[1])]).transpose(1, 0, 2)
    np.testing.assert_allclose(got, ref, atol=TOL)
    assert set(s.get_state()) == state_keys
    s.reset()
    T = X.shape[1]
    s.step_many(X[-1, :T // 2])
    saved = s.get_state()
    tail = s.step_many(X[-1, T // 2:])
    s.set_state(saved)
    np.testing.assert_array_equal(s.step_many(X[-1, T // 2:]), tail)


@pytest.mark.parametrize("F", [1, 6])
def test_attention_pool_every_path(tmp_path, F):
    m = _pool_model(tmp_path, F)
    rng = np.random.default_rng(F)
    X = rng.standard_normal((3, 130, 1 + F)).astype(np.float32)
    X[1, :, 0] *= 30.0  # large score swings: the running max keeps every exp <= 1
    ref = np.stack([pool_reference(x[:, :1], x[:, 1:]) for x in X])
    _every_path(m, X, ref, {"pool.ml", "pool.acc"})


def test_attention_pool_honours_lengths(tmp_path):
    m = _pool_model(tmp_path, 3)
    X = np.random.default_rng(0).standard_normal((2, 9, 4)).astype(np.float32)
    Y = m.run(X, lengths=np.array([9, 4]))
    np.testing.assert_allclose(Y[1, :4], pool_reference(X[1, :4, :1], X[1, :4, 1:]), atol=TOL)
    assert not Y[1, 4:].any()


def _attention_model(tmp_path, H, D, W, limit, scale):
    E = H * D
    b = GraphBuilder("q", E)
    b.add_input("k", E)
    b.add_input("v", E)
    b.output(b.add("CausalAttention", "attn", ["q", "k", "v"],
                   {"heads": H, "head_dim": D, "window": W, "limit": limit},
                   {"scale": np.array([scale], np.float32)}))
    return _save(tmp_path, b, f"attn{H}_{D}_{W}_{limit}.lstm")


@pytest.mark.parametrize("H,D,W,limit", [(1, 4, 5, False), (2, 3, 16, False), (4, 2, 1, False),
                                          (2, 4, 200, True)])
def test_causal_attention_every_path(tmp_path, H, D, W, limit):
    E = H * D
    scale = 1 / np.sqrt(D)
    m = _attention_model(tmp_path, H, D, W, limit, scale)
    rng = np.random.default_rng(E + W)
    X = rng.standard_normal((2, 140, 3 * E)).astype(np.float32)
    ref = np.stack([attention_reference(x[:, :E], x[:, E:2 * E], x[:, 2 * E:], H, W, scale)
                    for x in X])
    _every_path(m, X, ref, {"attn.keys", "attn.values", "attn.count"})


def test_sliding_window_streams_past_its_ring_many_times(tmp_path):
    H, D, W = 2, 2, 3
    m = _attention_model(tmp_path, H, D, W, False, 0.5)
    X = np.random.default_rng(3).standard_normal((1000, 3 * H * D)).astype(np.float32)
    s = m.stream()
    got = np.concatenate([s.step_many(X[i:i + 37]) for i in range(0, 1000, 37)])
    E = H * D
    np.testing.assert_allclose(got, attention_reference(X[:, :E], X[:, E:2 * E], X[:, 2 * E:], H, W, 0.5),
                               atol=TOL)
    assert s.get_state()["attn.count"][0] < 2 * W  # the counter stays small and exact


def test_full_attention_refuses_steps_past_max_len(tmp_path):
    m = _attention_model(tmp_path, 1, 2, 4, True, 1.0)
    X = np.random.default_rng(4).standard_normal((6, 6)).astype(np.float32)
    s = m.stream()
    s.step_many(X[:3])
    saved = s.get_state()
    with pytest.raises(ValueError, match=r"at most 4 steps \(its max_len.*larger max_len"):
        s.step_many(X[3:5])  # would make 5
    np.testing.assert_array_equal(s.get_state()["attn.keys"], saved["attn.keys"])
    s.step(X[3])
    with pytest.raises(ValueError, match="left untouched"):
        s.step(X[4])
    pool = m.streams(2)
    for t in range(4):
        pool.step(X[t:t + 2, :])
    with pytest.raises(ValueError, match="max_len"):
        pool.step(X[:2])
    with pytest.raises(ValueError, match="max_len"):
        m.run(X)
    assert m.run(X[:4]).shape == (4, 2)
    long = np.random.default_rng(5).standard_normal((70, 6)).astype(np.float32)
    with pytest.raises(ValueError, match="max_len"):
        m.stream().step_many(long)  # a long chunk runs node by node: refused there too


def test_hostile_count_in_state_stays_in_bounds(tmp_path):
    m = _attention_model(tmp_path, 1, 2, 3, False, 1.0)
    s = m.stream()
    st = s.get_state()
    st["attn.count"][:] = 1e9
    s.set_state(st)
    y = s.step(np.ones(6, np.float32))
    assert np.isfinite(y).all()
    st["attn.count"][:] = -5
    s.set_state(st)
    assert np.isfinite(s.step(np.ones(6, np.float32))).all()
