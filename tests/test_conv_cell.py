"""The ConvLSTM cell block (kernels/conv_cell.py): the 9/6 rational tanh's error over float32,
the gate-column order both ConvLSTM kernels use, and the cell on halved gates (full 16-filter
blocks and partial ones) against float64."""
import numpy as np
from numba import njit

from lstm_infer.kernels import conv_cell as cc


@njit
def _tanh43(x):
    out = np.empty_like(x)
    for i in range(x.size):
        n, d = cc.tanh_fraction43(x[i])
        out[i] = n / d
    return out


def test_tanh_fraction43_error_over_float32():
    """Every 97th float32 in [0, 12] and their negatives: max abs error 5.6e-7 (stated in
    conv_cell.py); NaN passes through, +-Inf give +-1."""
    pos = np.arange(0, np.float32(12.0).view(np.int32), 97, dtype=np.int32).view(np.float32)
    x = np.concatenate([pos, -pos])
    err = np.abs(_tanh43(x).astype(np.float64) - np.tanh(x.astype(np.float64))).max()
    assert err < 6e-7, err
    special = _tanh43(np.array([np.nan, np.inf, -np.inf], np.float32))
    assert np.isnan(special[0]) and abs(special[1] - 1) < 1e-6 and abs(special[2] + 1) < 1e-6


def test_gate_columns_groups_four_gates_per_16_filters():
    cols = cc.gate_columns(20)                   # two panels; the second holds filters 16..19
    assert cols.size == 128
    assert list(cols[:4]) == [0, 1, 2, 3] and cols[16] == 20 and cols[48] == 60
    assert list(cols[64:68]) == [16, 17, 18, 19] and (cols[68:80] == -1).all()
    a = np.arange(80, dtype=np.float32)
    p = cc.permute_columns(a, 20, halve_sigmoid_gates=True)
    assert p[0] == 0.0 and p[16] == 10.0 and p[32] == 40.0 and p[48] == 30.0  # i, f halved; c kept; o halved


@njit
def _cells(g, c, h, F, cfg):
    for q in range(-(-F // cc.FB)):
        cc.cell_block(g, q * cc.PANEL, cc.FB, c, h, q * cc.FB, min(cc.FB, F - q * cc.FB), cfg)


def _reference(z, c0):
    s = lambda v: 1 / (1 + np.exp(-v))
    i, f, g, o = np.split(z.astype(np.float64), 4)
    c = s(f) * c0 + s(i) * np.tanh(g)
    return c, s(o) * np.tanh(c)


def test_cell_block_default_and_general_match_float64():
    rng = np.random.default_rng(0)
    for F in (16, 20, 5):                         # full blocks, a partial one, one partial
        z = rng.uniform(-6, 6, 4 * F).astype(np.float32)
        c0 = rng.uniform(-2, 2, F).astype(np.float32)
        ref_c, ref_h = _reference(z, c0)
        for mode in (0.0, 1.0):                   # 1: the general path (gate_act per value)
            cfg = np.array([mode, 0, 0, 0, 1, 0, 0, 1, 0, 0], np.float32)
            g = cc.permute_columns(z, F, halve_sigmoid_gates=mode == 0.0).astype(np.float32)
            c, h = c0.copy(), np.zeros(F, np.float32)
            _cells(g, c, h, F, cfg)
            assert np.abs(c - ref_c).max() < 2e-6 and np.abs(h - ref_h).max() < 2e-6, (F, mode)
