"""The ConvLSTM cell update on one pixel's block of 16 filters (ops/conv_lstm.py and the
Winograd path, kernels/winograd.py).

Both of the ConvLSTM's kernels lay out their gate columns in panels of 64 = 4 gates x 16
filters: panel q, column 16*g + j is gate g (Keras order i, f, c, o) of filter 16*q + j
(`gate_columns`). So one pixel's four gates for 16 filters are 64 contiguous floats, and
the cell runs on them with a loop of exactly 16 lanes: one zmm (two ymm) per value, no
remainder. Before, the cell looped over a run-time F (16 on the benchmark frame) per pixel
and LLVM's vector loop (16 lanes x 4 unrolled) never ran: 175 us of thread time per 64x64
frame against 110 us for the same cells with F = 256.
"""
import numpy as np
from numba import njit

from . import KERNEL
from .activations import gate_act

FB = 16            # filters per block; the panel holds its 4 gates
PANEL = 4 * FB
CFG_SIZE = 10      # [mode, then (code, alpha, beta) for f, g, h]; mode 0: the defaults


def gate_columns(F: int) -> np.ndarray:
    """Source column (Keras order g*F + f) of each packed gate column, -1 for padding:
    panel q, column 16*g + j <- gate g of filter 16*q + j. Length 4 * ceil(F/16) * 16,
    which equals the 64-column padding of 4F (no extra columns)."""
    nq = -(-F // FB)
    q, g, j = np.meshgrid(np.arange(nq), np.arange(4), np.arange(FB), indexing="ij")
    f = q * FB + j
    return np.where(f < F, g * F + f, -1).reshape(-1)


def permute_columns(a: np.ndarray, F: int, halve_sigmoid_gates: bool = False) -> np.ndarray:
    """a (..., 4F) -> (..., Mp) in gate_columns order, zeros in the padding columns. With
    halve_sigmoid_gates (the default activations), gates i, f, o are multiplied by 1/2
    (exact): the cell's sigmoid(z) = (1 + tanh(z/2)) / 2 then needs no multiplication."""
    a = np.asarray(a)
    if halve_sigmoid_gates:
        a = a * np.repeat(np.array([0.5, 0.5, 1.0, 0.5], a.dtype), F)
    cols = gate_columns(F)
    out = np.zeros(a.shape[:-1] + (cols.size,), a.dtype)
    out[..., cols >= 0] = a[..., cols[cols >= 0]]
    return out


@njit(inline="always", **KERNEL)
def cell_block(g, go, gs, c, h, so, nf, cfg):
    """c, h[so:so+nf] <- the LSTM cell of gates g[go + gs*gate + j], j < nf <= 16. With the
    default activations (cfg[0] == 0) gates i, f, o come halved (permute_columns).
    Inlined: as a call (once per pixel and panel) its array arguments cost four reference
    count increments and decrements (out transform + cell 178 -> 166 us per 64x64 frame)."""
    if cfg[0] == 0:
        if nf == FB:
            _cell16(g, go, gs, c[so:so + FB], h[so:so + FB])
            return
        for j in range(nf):
            c[so + j], h[so + j] = _cell_default(g[go + j], g[go + gs + j], g[go + 2 * gs + j],
                                                 g[go + 3 * gs + j], c[so + j])
        return
    fk, fa, fb = int(cfg[1]), cfg[2], cfg[3]
    gk, ga, gb = int(cfg[4]), cfg[5], cfg[6]
    hk, ha, hb = int(cfg[7]), cfg[8], cfg[9]
    for j in range(nf):
        zi, zf, zc, zo = g[go + j], g[go + gs + j], g[go + 2 * gs + j], g[go + 3 * gs + j]
        cj = gate_act(zf, fk, fa, fb) * c[so + j] + gate_act(zi, fk, fa, fb) * gate_act(zc, gk, ga, gb)
        c[so + j] = cj
        h[so + j] = gate_act(zo, fk, fa, fb) * gate_act(cj, hk, ha, hb)


@njit(inline="always", **KERNEL)
def _cell16(g, go, gs, cp, hp):
    """_cell_default on 16 filters: a loop of exactly 16 lanes (no remainder)."""
    zi, zf = g[go:go + FB], g[go + gs:go + gs + FB]
    zc, zo = g[go + 2 * gs:go + 2 * gs + FB], g[go + 3 * gs:go + 3 * gs + FB]
    for j in range(FB):
        cp[j], hp[j] = _cell_default(zi[j], zf[j], zc[j], zo[j], cp[j])


@njit(inline="always", **KERNEL)
def cell64(g, go, gs, c, h, so):
    """The default cell on 64 contiguous values: four pixels of a tile row when F = 16 (their
    c and h are adjacent), gates at g[go + gs*gate + j]. One loop instead of four halves
    the per-loop setup (run-time overlap checks of c, h and the gates, constants)."""
    zi, zf = g[go:go + PANEL], g[go + gs:go + gs + PANEL]
    zc, zo = g[go + 2 * gs:go + 2 * gs + PANEL], g[go + 3 * gs:go + 3 * gs + PANEL]
    cp, hp = c[so:so + PANEL], h[so:so + PANEL]
    for j in range(PANEL):
        cp[j], hp[j] = _cell_default(zi[j], zf[j], zc[j], zo[j], cp[j])


_CLAMP = np.float32(7.9)
# tanh(x) ~ x P(x^2) / Q(x^2) on [-7.9, 7.9], P of degree 4 and Q of 3 (a least-maximum-error
# fit, float64, then rounded): max abs error 5.6e-7 in float32 (tests/test_conv_cell.py),
# against 3.5e-7 for the 13/6 form of activations.fast_tanh, with 2 multiply-adds fewer
# per value: 10 of the cell's ~85 vector operations per 16 filters.
_P = tuple(np.float32(v) for v in (0.9999991573813198, 0.12708760182009277, 0.0026935777979919017,
                                    7.151095099601085e-06, -6.140762016176989e-09))
_Q = tuple(np.float32(v) for v in (1.0, 0.4604178423887351, 0.022836193763202037,
                                    0.0001964609825163025))


@njit(inline="always", **KERNEL)
def tanh_fraction43(x):
    """tanh(x) as (numerator, denominator) of the 9/6 rational form above."""
    x = max(min(x, _CLAMP), -_CLAMP)  # vminps + vmaxps, NaN passes (activations.py)
    x2 = x * x
    p = ((_P[4] * x2 + _P[3]) * x2 + _P[2]) * x2 + _P[1]
    p = p * x2 + _P[0]
    q = ((_Q[3] * x2 + _Q[2]) * x2 + _Q[1]) * x2 + _Q[0]
    return x * p, q


@njit(inline="always", **KERNEL)
def _cell_default(zi, zf, zc, zo, cprev):
    """(c, h) of sigmoid gates i, f, o (given halved) and tanh: sigmoid = (d + n) / 2d and
    tanh = n / d with (n, d) = tanh_fraction43, so c and h each take one division instead
    of 3 + 2 (64x64, 16 filters: 206 -> 134 us per step of thread time, measured with the
    13/6 fraction)."""
    two = np.float32(2.0)
    ni, di = tanh_fraction43(zi)
    nf, df = tanh_fraction43(zf)
    ng, dg = tanh_fraction43(zc)
    no, do = tanh_fraction43(zo)
    cj = (((nf + df) * di * dg) * cprev + (ni + di) * ng * df) / (two * df * di * dg)
    nc, dc = tanh_fraction43(cj)
    return cj, (no + do) * nc / (two * do * dc)
