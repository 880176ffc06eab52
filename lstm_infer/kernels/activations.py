"""Scalar activations shared by the cells and the Activation op.

The default LSTM/GRU/RNN cells use `fast_tanh` (a rational approximation, max abs error
3.5e-7 over all float32, tests/test_fast_math.py) so that the whole cell loop vectorises;
ONNX's gate activations (`gate_act`) cover the other kinds a recurrent cell may use.
"""
import math

import numpy as np
from numba import njit

from . import KERNEL

# Gate activations of recurrent cells (ONNX `activations`), codes used in the cell config
# block (lstm_infer/ops/recurrent.py).
GATE_ACT_CODES = {"sigmoid": 0, "tanh": 1, "relu": 2, "affine": 3, "leaky_relu": 4,
                  "thresholded_relu": 5, "scaled_tanh": 6, "hard_sigmoid": 7, "elu": 8,
                  "softsign": 9, "softplus": 10}


_TANH_CLAMP = np.float32(7.90531110763549805)


@njit(inline="always", **KERNEL)
def tanh_fraction(x):
    """fast_tanh(x) as (numerator, denominator): callers that combine several tanh/sigmoid
    values (the ConvLSTM cell) divide once for all of them."""
    # min/max compile to vminps + vmaxps and let NaN through; the if-else form compiled
    # to compares and blends (ConvLSTM cell on a 64x64x16 frame: 151 -> 135 us)
    x = max(min(x, _TANH_CLAMP), -_TANH_CLAMP)
    x2 = x * x
    p = np.float32(-2.76076847742355e-16)
    p = p * x2 + np.float32(2.00018790482477e-13)
    p = p * x2 + np.float32(-8.60467152213735e-11)
    p = p * x2 + np.float32(5.12229709037114e-08)
    p = p * x2 + np.float32(1.48572235717979e-05)
    p = p * x2 + np.float32(6.37261928875436e-04)
    p = p * x2 + np.float32(4.89352455891786e-03)
    q = np.float32(1.19825839466702e-06)
    q = q * x2 + np.float32(1.18534705686654e-04)
    q = q * x2 + np.float32(2.26843463243900e-03)
    q = q * x2 + np.float32(4.89352518554385e-03)
    return x * p, q


@njit(inline="always", **KERNEL)
def fast_tanh(x):
    """tanh as a 13/6 rational function on [-7.9, 7.9] (the minimax form Eigen uses);
    branch-free, so loops over it vectorise. Max abs error 3.5e-7 in float32."""
    n, d = tanh_fraction(x)
    return n / d


@njit(inline="always", **KERNEL)
def fast_sigmoid(x):
    """sigmoid(x) = (1 + tanh(x/2)) / 2; max abs error 2.3e-7."""
    return np.float32(0.5) * fast_tanh(np.float32(0.5) * x) + np.float32(0.5)


@njit(**KERNEL)
def gate_act(v, kind, a, b):
    """One ONNX recurrent activation (see GATE_ACT_CODES)."""
    if kind == 0:
        return fast_sigmoid(v)
    if kind == 1:
        return fast_tanh(v)
    if kind == 2:
        return v if v > 0 else np.float32(0.0)
    if kind == 3:
        return a * v + b
    if kind == 4:
        return v if v >= 0 else a * v
    if kind == 5:
        return v if v > a else np.float32(0.0)
    if kind == 6:
        return a * math.tanh(b * v)
    if kind == 7:
        return min(max(a * v + b, np.float32(0.0)), np.float32(1.0))
    if kind == 8:
        return v if v >= 0 else a * (math.exp(v) - np.float32(1.0))
    if kind == 9:
        return v / (np.float32(1.0) + abs(v))
    return math.log1p(math.exp(v)) if v < 20 else v  # softplus


@njit(**KERNEL)
def clipv(v, clip):
    if clip > 0:
        if v > clip:
            return clip
        if v < -clip:
            return -clip
    return v


