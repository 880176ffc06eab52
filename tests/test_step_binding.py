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
                               np.arange(6, dtype=np.float32)[::2],
                               np.arange(3, dtype=np.float32)[::-1],  # negative stride
                               np.arange(9, dtype=np.float32).reshape(3, 3)[:, 1]])
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


def _nrt_counts():
    from numba.core.runtime import _nrt_python as nrt
    return (nrt.memsys_get_stats_alloc(), nrt.memsys_get_stats_free(),
            nrt.memsys_get_stats_mi_alloc(), nrt.memsys_get_stats_mi_free())


@pytest.fixture()
def nrt_stats():
    from numba.core.runtime import _nrt_python as nrt
    was = nrt.memsys_stats_enabled()
    nrt.memsys_enable_stats()
    yield _nrt_counts
    if not was:
        nrt.memsys_disable_stats()


def test_step_takes_no_nrt_memory(model, nrt_stats):
    """The step interpreters run without Numba's reference counting
    (kernels/interpreter.py, `_nrt=False`): a recurrent step, of one stream or a pool,
    allocates no NRT memory and wraps no argument in a MemInfo, so none can be left behind."""
    s = _bound(model)
    x = np.ones(3, np.float32)
    out = np.empty(s.output_size, np.float32)
    pool = model.streams(3)
    X = np.ones((3, 3), np.float32)
    pool.step(X)
    before = nrt_stats()
    for _ in range(5):
        s.step(x)
        s.step(x, out=out)
        s.step_many(np.ones((4, 3), np.float32))
        pool.step(X)
    assert nrt_stats() == before


def test_every_op_step_balances_nrt_memory(tmp_path, nrt_stats):
    """Every op's step (the models of `lstm-infer compile`) frees whatever NRT memory the
    kernels it calls allocate: nothing is leaked by the interpreter running without NRT."""
    from lstm_infer.ops.embedding import example_inputs
    from lstm_infer.precompile import every_op_models
    for p in every_op_models(str(tmp_path)):
        m = lstm_infer.load(p)
        if not m.streamable:
            continue
        X = example_inputs(m.graph, (3, m.input_size), np.random.default_rng(0))
        s, pool = m.stream(), m.streams(2)
        s.step(X[0])  # compiles or loads what it calls
        pool.step(X[:2])
        a0, f0, m0, mf0 = nrt_stats()
        s.step(X[1])
        s.step_many(X)
        pool.step(X[1:])
        a1, f1, m1, mf1 = nrt_stats()
        assert (a1 - a0, m1 - m0) == (f1 - f0, mf1 - mf0), p


def test_bound_step_kernel_refuses_lengths_and_strides(model):
    """The closure leaves x's length and strides to the kernel (step_sequence's code 4:
    nothing read, state untouched), then to the method's conversion or error, with and
    without `out`."""
    s, plain = _bound(model), model.stream()
    out = np.empty(s.output_size, np.float32)
    x = np.array([0.5, -1.0, 2.0], np.float32)
    for bad in (np.zeros(2, np.float32), np.zeros(4, np.float32), np.zeros(0, np.float32),
                np.zeros(6, np.float32), np.zeros((1, 3), np.float32)):
        before = s.get_state()
        for o in (None, out):
            with pytest.raises(ValueError, match=r"expected \(3,\)"):
                s.step(bad, out=o)
        assert all(np.array_equal(before[k], v) for k, v in s.get_state().items())
    wide = np.zeros(6, np.float32)
    wide[::2] = x
    want = Stream.step(plain, x).copy()
    np.testing.assert_array_equal(s.step(wide[::2], out=out), want)
    np.testing.assert_array_equal(s.step(wide[::2]), Stream.step(plain, x))
