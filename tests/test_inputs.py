"""Bad input to run()/step()/step_many()/streams(): clear errors, state never poisoned."""
import numpy as np
import pytest

import lstm_infer
from builders import stacked


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    p = tmp_path_factory.mktemp("m") / "m.lstm"
    stacked(p, "LSTM", 3, 5, layers=2)
    return lstm_infer.load(p)


def _states_equal(a, b):
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("bad,msg", [
    (np.zeros(4), r"x has shape \(4,\), expected \(3,\)"),
    (np.zeros((1, 3)), r"x has shape \(1, 3\), expected \(3,\)"),
    (np.float32(1.0), r"x has shape \(\), expected \(3,\)"),
])
def test_step_wrong_shape(model, bad, msg):
    with pytest.raises(ValueError, match=msg):
        model.stream().step(bad)


@pytest.mark.parametrize("bad", [np.array(["a", "b", "c"]), np.zeros(3, complex),
                                 np.array([None, 1, 2], dtype=object), "abc", [[1, 2], [3]]])
def test_step_wrong_dtype_is_type_error(model, bad):
    with pytest.raises(TypeError, match="numeric"):
        model.stream().step(bad)


def test_numeric_dtypes_are_converted(model):
    s = model.stream()
    a = s.step(np.array([1, 2, 3], np.int64))
    s.reset()
    b = s.step([1.0, 2.0, 3.0])
    s.reset()
    c = s.step(np.array([1, 2, 3], np.float64))
    assert a.dtype == np.float32 and np.array_equal(a, b) and np.array_equal(b, c)


def test_run_shapes(model):
    with pytest.raises(ValueError, match=r"X has shape \(10, 4\), expected \(T, 3\) or \(B, T, 3\)"):
        model.run(np.zeros((10, 4)))
    with pytest.raises(ValueError, match="expected"):
        model.run(np.zeros(3))
    with pytest.raises(ValueError, match="empty sequence"):
        model.run(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="empty sequence"):
        model.run(np.zeros((2, 0, 3)))
    with pytest.raises(TypeError):
        model.run(np.zeros((4, 3), dtype=bool))
    # non-contiguous input is fine
    X = np.random.default_rng(0).standard_normal((3, 20, 6)).astype(np.float32)[:, :, ::2]
    assert np.array_equal(model.run(X), model.run(np.ascontiguousarray(X)))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nonfinite_step_raises_and_leaves_state_untouched(model, value):
    s = model.stream()
    rng = np.random.default_rng(0)
    s.step_many(rng.standard_normal((5, 3)))
    before = s.get_state()
    bad = np.array([0.1, value, 0.2])
    with pytest.raises(ValueError, match="NaN or Inf.*untouched"):
        s.step(bad)
    assert _states_equal(s.get_state(), before)
    # a chunk with one bad row in the middle is rejected whole, nothing is lost
    X = rng.standard_normal((8, 3))
    X[4, 0] = value
    with pytest.raises(ValueError, match="NaN or Inf"):
        s.step_many(X)
    assert _states_equal(s.get_state(), before)
    with pytest.raises(ValueError, match="NaN or Inf"):
        model.run(X)
    # the stream goes on normally afterwards
    assert np.isfinite(s.step(np.zeros(3))).all()


def test_nonfinite_propagate_policy(model):
    s = model.stream(on_nonfinite="propagate")
    y = s.step(np.array([np.nan, 0, 0]))
    assert np.isnan(y).all()
    assert np.isnan(model.run(np.full((2, 3), np.nan), on_nonfinite="propagate")).all()
    with pytest.raises(ValueError, match="on_nonfinite"):
        model.stream(on_nonfinite="ignore")


def test_pool_input_checks(model):
    p = model.streams(4)
    with pytest.raises(ValueError, match=r"\(4, 3\)"):
        p.step(np.zeros((3, 3)))
    X = np.zeros((4, 3))
    X[2, 1] = np.nan
    before = p.get_state()
    with pytest.raises(ValueError, match="NaN"):
        p.step(X)
    assert _states_equal(p.get_state(), before)


def test_step_many_empty_chunk(model):
    s = model.stream()
    before = s.get_state()
    Y = s.step_many(np.zeros((0, 3)))
    assert Y.shape == (0, 2)
    assert _states_equal(s.get_state(), before)
    with pytest.raises(ValueError, match=r"expected \(T, 3\)"):
        s.step_many(np.zeros((4, 2)))


def test_set_state_rejects_nonfinite(model):
    s = model.stream()
    st = s.get_state()
    st["lstm0.h"][0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        s.set_state(st)
    assert not any(v.any() for v in s.get_state().values())


def test_summary(model):
    text = str(model)
    assert "input 3 -> output 2" in text and "LSTM 3->5" in text and "Linear 5->2" in text
    assert "streamable: yes" in text
    assert model.input_size == 3 and model.output_size == 2
