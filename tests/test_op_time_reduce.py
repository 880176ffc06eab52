"""TimeReduce (running mean/sum/max/min over time, prefix semantics) against a float64
numpy reference on every path: run() (batched, with lengths), step(), chunked step_many
(short chunks through the interpreter, long ones node by node), streams, state round trip.
Tolerance: 1e-5 max abs on unit-scale data (float32 running sums vs float64)."""
import numpy as np
import pytest

import lstm_infer
from lstm_infer.builder import GraphBuilder

TOL = 1e-5


def reference(X, kind):
    """X (T, F) -> (T, F): row t is the reduction of X[:t+1] (the prefix result)."""
    X = X.astype(np.float64)
    T = X.shape[0]
    if kind == "sum":
        return np.cumsum(X, 0)
    if kind == "mean":
        return np.cumsum(X, 0) / np.arange(1, T + 1)[:, None]
    return (np.maximum if kind == "max" else np.minimum).accumulate(X, 0)


def _model(tmp_path, kind, F):
    b = GraphBuilder("x", F)
    b.output(b.add("TimeReduce", "pool", ["x"], {"kind": kind, "size": F}))
    p = tmp_path / f"{kind}{F}.lstm"
    b.save(p)
    return lstm_infer.load(p)


@pytest.mark.parametrize("kind", ["mean", "sum", "max", "min"])
@pytest.mark.parametrize("F", [1, 5])
def test_time_reduce_every_path(tmp_path, kind, F):
    m = _model(tmp_path, kind, F)
    rng = np.random.default_rng(F)
    X = rng.standard_normal((3, 150, F)).astype(np.float32)
    ref = np.stack([reference(x, kind) for x in X])
    np.testing.assert_allclose(m.run(X), ref, atol=TOL)
    s = m.stream()
    steps = np.array([s.step(x) for x in X[0]])
    np.testing.assert_allclose(steps, ref[0], atol=TOL)
    s.reset()
    # short chunks (interpreter) and a long one (node by node) carry the state across
    chunks = np.concatenate([s.step_many(X[0, :7]), s.step_many(X[0, 7:8]), s.step_many(X[0, 8:])])
    np.testing.assert_array_equal(chunks, steps)  # same arithmetic on every path
    pool = m.streams(3)
    got = np.array([pool.step(X[:, t]) for t in range(X.shape[1])]).transpose(1, 0, 2)
    np.testing.assert_allclose(got, ref, atol=TOL)
    assert set(s.get_state()) == {"pool.acc", "pool.count"}
    s.reset()
    s.step_many(X[2, :90])
    saved = s.get_state()
    assert saved["pool.count"][0] == 90
    tail = s.step_many(X[2, 90:])
    s.set_state(saved)
    np.testing.assert_array_equal(s.step_many(X[2, 90:]), tail)
    np.testing.assert_allclose(tail, ref[2, 90:], atol=TOL)


def test_time_reduce_honours_lengths(tmp_path):
    m = _model(tmp_path, "mean", 3)
    X = np.random.default_rng(0).standard_normal((2, 9, 3)).astype(np.float32)
    Y = m.run(X, lengths=np.array([9, 4]))
    np.testing.assert_allclose(Y[1, :4], reference(X[1, :4], "mean"), atol=TOL)
    assert not Y[1, 4:].any()


def test_time_reduce_bad_kind_is_a_format_error(tmp_path):
    b = GraphBuilder("x", 2)
    with pytest.raises(Exception, match="time reduction kind"):
        b.add("TimeReduce", "pool", ["x"], {"kind": "median", "size": 2})
