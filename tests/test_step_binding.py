"""step() is a closure bound to the stream (lstm_infer/stream.py, _bound_step): it must
give the method's exact results and hand every other input to the method's checks."""
import gc
import weakref

import numpy as np
import pytest

import lstm_infer
from builders import stacked
from lstm_infer.stream import Stream


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    p = tmp_path_factory.mktemp("m") / "m.lstm"
    stacked(p, "LSTM", 3, 5, layers=2)
    return lstm_infer.load(p)


def _bound(model):
    s = model.stream()
    assert "step" in vars(s)  # the closure shadows the method
    s.step(np.zeros(3, np.float32))  # the first call compiles (or finds) the entry point
    s.reset()
    return s


def test_bound_step_equals_method(model):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 3)).astype(np.float32)
    bound, plain = _bound(model), model.stream()
    out = np.empty(plain.output_size, np.float32)
    for t, x in enumerate(X):
        want = Stream.step(plain, x)
        got = bound.step(x) if t % 2 else bound.step(x, out=out).copy()
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(bound.step(X[0]), model.run(np.vstack([X, X[:1]]))[-1])


def test_bound_step_returns_fresh_arrays(model):
    s = _bound(model)
    a = s.step(np.ones(3, np.float32))
    b = s.step(np.ones(3, np.float32))
    assert a is not b and not np.shares_memory(a, b)


@pytest.mark.parametrize("x", [[1.0, 2.0, 3.0], np.arange(3, dtype=np.float64),
                               np.arange(6, dtype=np.float32)[::2]])
def test_bound_step_converts_like_the_method(model, x):
    s, plain = _bound(model), model.stream()
    np.testing.assert_array_equal(s.step(x), Stream.step(plain, x))


def test_bound_step_refuses_like_the_method(model):
    s = _bound(model)
    s.step(np.ones(3, np.float32))
    before = s.get_state()
    with pytest.raises(ValueError, match="NaN"):
        s.step(np.array([1.0, np.nan, 0.0], np.float32))
    with pytest.raises(ValueError, match=r"expected \(3,\)"):
        s.step(np.zeros(4, np.float32))
    for bad_out in (np.empty(3, np.float32), np.empty(s.output_size, np.float64),
                    np.empty(s.output_size, np.float32)[::-1]):
        with pytest.raises(ValueError, match="out must be"):
            s.step(np.ones(3, np.float32), out=bad_out)
    readonly = np.empty(s.output_size, np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        s.step(np.ones(3, np.float32), out=readonly)
    after = s.get_state()
    assert all(np.array_equal(before[k], after[k]) for k in before)  # nothing was stepped


def test_bound_stream_is_freed_without_the_cycle_collector(model):
    s = _bound(model)
    ref = weakref.ref(s)
    gc.disable()
    try:
        del s
        assert ref() is None
    finally:
        gc.enable()


def test_step_fetched_once_keeps_working_and_shares_state(model):
    x = np.ones(3, np.float32)
    f = model.stream().step  # the stream itself is dropped at once
    plain = model.stream()
    for _ in range(3):
        np.testing.assert_array_equal(f(x), Stream.step(plain, x))
    s = model.stream()
    s.step(x)
    s.step(x)
    after_two = s.get_state()
    s.reset()
    s.step(x)
    assert not all(np.array_equal(after_two[k], v) for k, v in s.get_state().items())
    s.step(x)
    assert all(np.array_equal(after_two[k], v) for k, v in s.get_state().items())
