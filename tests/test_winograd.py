"""Winograd F(4x4, 3x3) (kernels/winograd.py) against a float64 direct convolution: the
gates of both ConvLSTM convolutions over [x | h], frames whose sizes are not multiples of
the 4x4 tile, asymmetric pads, more than one 16-channel chunk and one 64-column panel,
and the benchmark's 64x64 frame. The step itself is checked end to end in
tests/test_op_convlstm.py (every path, 1e-5 vs float64) and the torch/Keras tests."""
import numpy as np
import pytest
from numba import njit

from lstm_infer.kernels import winograd as wg
from lstm_infer.kernels.conv_cell import gate_columns, permute_columns
from lstm_infer.ops.conv_lstm import pad_copy


def conv64(xp, W):
    """'valid' float64 convolution of a padded channels-last frame."""
    Ho, Wo = xp.shape[0] - 2, xp.shape[1] - 2
    out = np.zeros((Ho, Wo, W.shape[3]))
    for ky in range(3):
        for kx in range(3):
            out += xp[ky:ky + Ho, kx:kx + Wo] @ W[ky, kx].astype(np.float64)
    return out


@njit
def _gates_of_row(P, Mp, Tx, bias, G):
    """G (4, 4Tx, Mp) = the gates of one tile row, as output_cell hands them to the cell."""
    tmp = np.empty(16 * wg.PANEL, np.float32)
    for t in range(Tx):
        for q in range(Mp // wg.PANEL):
            wg.output_tile(P, Mp, t, q, bias, tmp)
            for g in range(4):  # tmp is gate-major: tmp[g*256 + (r*4 + x)*16 + f]
                for r in range(4):
                    for x in range(4):
                        o = g * 256 + (r * 4 + x) * 16
                        G[r, 4 * t + x, q * wg.PANEL + g * 16:q * wg.PANEL + (g + 1) * 16] = tmp[o:o + 16]


def winograd_gates(x, h, Wx, Wh, bias, pads):
    """The gates (Ho, Wo, 4F) as ops/conv_lstm.py's _step_winograd computes them (columns
    back in Keras order from the kernels' panel order, conv_cell.gate_columns)."""
    H, W, C = x.shape
    Ho, Wo, F = h.shape
    M = 4 * F
    Mp = -(-M // wg.PANEL) * wg.PANEL
    K = C + F
    Ty, Tx = wg.tiles(Ho, Wo)
    Hw, Ww = 4 * Ty + 2, 4 * Tx + 2
    Kc = wg.padded_channels(K)
    xp = np.empty(Hw * Ww * C, np.float32)
    hp = np.empty(Hw * Ww * F, np.float32)
    pad_copy(x.ravel(), H, W, C, xp, Hw, Ww, pads[0], pads[1])
    pad_copy(h.ravel(), Ho, Wo, F, hp, Hw, Ww, 1, 1)
    U = wg.transform_weights(Wx, Wh).ravel()
    V = np.zeros(36 * Tx * Kc, np.float32)
    P = np.empty(36 * Tx * Mp, np.float32)
    G = np.empty((4, 4 * Tx, Mp), np.float32)
    b = permute_columns(bias.astype(np.float32), F)
    rows = []
    for ty in range(Ty):
        wg.input_transform(hp, Ww, F, ty, Tx, V, Kc, 0)
        wg.input_transform_x(xp, Ww, C, ty, Tx, V, Kc, F)
        wg.products(V, K, Kc, Tx, U, 0, P, Mp)
        _gates_of_row(P, Mp, Tx, b, G)
        rows.append(G.copy())
    cols = gate_columns(F)
    out = np.empty((4 * Ty, 4 * Tx, M), np.float32)
    out[..., cols[cols >= 0]] = np.concatenate(rows)[..., cols >= 0]
    return out[:Ho, :Wo]


CASES = [  # H, W, C, F, pads (top, left, bottom, right)
    (5, 6, 2, 3, (1, 1, 1, 1)),      # 'same', partial tiles
    (9, 7, 1, 2, (0, 0, 0, 0)),      # 'valid'
    (6, 11, 20, 17, (2, 0, 1, 1)),   # asymmetric pads, two 32-channel chunks, two panels
    (7, 17, 16, 32, (1, 1, 1, 1)),   # h as two 16-channel vectors (wino_ir), 4 + 1 tiles, two panels
]


@pytest.mark.parametrize("H,W,C,F,pads", CASES)
def test_gates_match_float64_direct_convolution(H, W, C, F, pads):
    rng = np.random.default_rng(H * W + C)
    x = rng.standard_normal((H, W, C)).astype(np.float32)
    Ho, Wo = H + pads[0] + pads[2] - 2, W + pads[1] + pads[3] - 2
    h = rng.uniform(-1, 1, (Ho, Wo, F)).astype(np.float32)
    Wx = rng.uniform(-0.3, 0.3, (3, 3, C, 4 * F)).astype(np.float32)
    Wh = rng.uniform(-0.3, 0.3, (3, 3, F, 4 * F)).astype(np.float32)
    bias = rng.uniform(-0.3, 0.3, 4 * F).astype(np.float32)
    xp = np.pad(x.astype(np.float64), ((pads[0], pads[2]), (pads[1], pads[3]), (0, 0)))
    ref = conv64(xp, Wx) + conv64(np.pad(h.astype(np.float64), ((1, 1), (1, 1), (0, 0))), Wh) + bias
    got = winograd_gates(x, h, Wx, Wh, bias, pads)
    # F(4x4, 3x3) loses about one digit against fp32 direct: relative to the gates' scale
    assert np.abs(got - ref).max() < 2e-5 * max(1.0, np.abs(ref).max())


def test_benchmark_frame_error():
    """64x64x1 frame, 16 filters, the weights' scale of a torch Conv2d (uniform +-1/sqrt(153)):
    the gates' max abs error vs float64, measured 2.5e-6 (2.4e-6 before the input transform
    in LLVM IR contracted one multiply-add differently; fp32 direct: 2.5e-7)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 64, 1)).astype(np.float32)
    h = rng.uniform(-1, 1, (64, 64, 16)).astype(np.float32)
    s = 1 / np.sqrt(17 * 9)
    Wx = rng.uniform(-s, s, (3, 3, 1, 64)).astype(np.float32)
    Wh = rng.uniform(-s, s, (3, 3, 16, 64)).astype(np.float32)
    bias = rng.uniform(-s, s, 64).astype(np.float32)
    ref = (conv64(np.pad(x.astype(np.float64), ((1, 1), (1, 1), (0, 0))), Wx)
           + conv64(np.pad(h.astype(np.float64), ((1, 1), (1, 1), (0, 0))), Wh) + bias)
    err = np.abs(winograd_gates(x, h, Wx, Wh, bias, (1, 1, 1, 1)) - ref).max()
    print(f"Winograd F(4x4, 3x3) gates max abs error vs float64: {err:.2g}")
    assert err < 5e-6
