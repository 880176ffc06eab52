"""The rational tanh/sigmoid used by the default cells: error over float32, NaN, saturation."""
import numpy as np
from numba import njit

from lstm_infer.kernels.activations import fast_sigmoid, fast_tanh


@njit(cache=False)
def _apply(xs, t, s):
    for i in range(xs.size):
        t[i] = fast_tanh(xs[i])
        s[i] = fast_sigmoid(xs[i])


def _eval(xs):
    t, s = np.empty_like(xs), np.empty_like(xs)
    _apply(xs, t, s)
    return t, s


def test_error_bounds_dense_grid():
    xs = np.concatenate([np.linspace(-30, 30, 3_000_001), np.linspace(-1e-3, 1e-3, 100_001)]).astype(np.float32)
    t, s = _eval(xs)
    x64 = xs.astype(np.float64)
    tanh_err = np.abs(t - np.tanh(x64)).max()
    sig_err = np.abs(s - 1 / (1 + np.exp(-x64))).max()
    assert tanh_err < 4e-7, tanh_err
    assert sig_err < 3e-7, sig_err
    # odd symmetry and range
    assert np.array_equal(t, -_eval(-xs)[0])
    assert (np.abs(t) <= 1).all() and (s >= 0).all() and (s <= 1).all()


def test_extremes_and_nan():
    xs = np.array([np.inf, -np.inf, 1e30, -1e30, np.nan, 0.0], np.float32)
    t, s = _eval(xs)
    assert np.allclose(t[:4], [1, -1, 1, -1], atol=1e-6)
    assert np.allclose(s[:4], [1, 0, 1, 0], atol=3e-7)
    assert np.isnan(t[4]) and np.isnan(s[4])
    assert t[5] == 0 and s[5] == 0.5
