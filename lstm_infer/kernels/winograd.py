"""Winograd F(4x4, 3x3) for ConvLSTM's 3x3 stride-1 convolutions (ops/conv_lstm.py).

Both of a ConvLSTM's convolutions, when 3x3 with stride 1 and no dilation, are 'valid'
convolutions of zero-padded (Ho+2, Wo+2) frames: x padded by the node's pads, h by one
pixel ('same'). So they share one transform over K = C + F channels: per 4x4 output tile,
the 6x6 patch d of [h | x] becomes V = B^T d B (36 numbers per channel), the product with
the transformed weights U = G g G^T is 36 small GEMMs (tiles, K) @ (K, 4F), and the 4x4
outputs are A^T m A. That is 36 multiplications per 16 outputs instead of 144: on the
64x64, 16-filter benchmark frame 10.0M instead of 40.1M multiply-adds per step.

F(2x2, 3x3) (16 per 4 outputs, 2.25x fewer) would be near fp32-exact, but 2.25x on the
convolutions cannot reach the goal; F(4x4, 3x3) loses about one digit (see POINTS): on
the benchmark frame the gates' max abs error vs float64 is 2.5e-6 (fp32 direct 2.5e-7),
h's 1e-6 after the cell (tests/test_winograd.py).

Work goes one row of tiles at a time (4 output rows), so the transformed tiles V
(36 x tiles x K) and products (36 x tiles x Mp) of a row stay in L2 (147 KB for 16 tiles
of 64 gates) and each U[position] (K x 64, 4.3 KB) stays in L1 while all tiles of the row
use it. Gate columns are padded to Mp = 64-column panels as in the direct kernel.

Where a step's time goes (64x64x1 frame, 16 filters, thread time per frame on the shared
AMD EPYC with AVX-512, each part timed alone over the 16 tile rows): h and x padding
7 us, input transform of h 24 and of x 19, products 184 (10.0M multiply-adds, 54 GMAC/s,
near the FMA peak: the register block's sums stay in registers, kernels/gemm_block.py;
with them in a stack array 244 us), output transform + cell 113 (transform ~15, written
as LLVM IR in kernels/wino_ir.py; the cell ~95, compute-bound: ~70 vector operations
per 16 values, 5 clamped rational functions and 2 divisions); ~310 us for the op and
~367 per Stream.step (the copies of the output frame and the cache misses they cause),
against 430 / 490 before the IR kernels, 650 before the fused cell, 1119 direct. Compiled
for AVX2 (NUMBA_CPU_NAME=haswell with the avx512 features off: NUMBA_CPU_NAME alone keeps
the host's AVX-512) the products take 206 us (328 with the stack array).
"""
from __future__ import annotations

import numpy as np
from numba import carray, njit

from . import KERNEL
from .conv_cell import FB, cell64, cell_block, permute_columns
from .gemm_block import panel_rows1, panel_rows4
from .linalg import _stack_f32
from .wino_ir import tile_gates, tile_input1, tile_input16

PANEL = 64      # gate columns per panel: four output tiles x 64 sums = 16 zmm
BLOCK = 4       # tiles per register block (kernels/gemm_block.py)
TILE = 4        # output pixels per tile side
NPOS = 36       # 6 x 6 transformed positions per tile
CHUNK = 32      # channels per input-transform pass (a stack array of 36 x CHUNK)
IN_TMP = NPOS * CHUNK          # literals for stack arrays (alloca_once needs a constant)
OUT_TMP = TILE * TILE * PANEL

# Interpolation points 0, 1, -1, 1/2, -2 and infinity: the gates' max abs error vs float64
# measured 2.9e-6 against 6.5e-6 for the usual 0, +-1, +-2 (fp32 simulation, 17 channels
# of unit data, weights +-1/sqrt(153); points 0, +-1, +-1/2 gave 6.9e-6). B^T and A^T of
# these points are written out in _bt and in wino_ir._Emit.at; G (row j: a_j^k / prod_{l != j}(a_j - a_l),
# the last row (0, 0, 1)) is applied in float64 by transform_weights.
POINTS = (0.0, 1.0, -1.0, 0.5, -2.0)
_G = np.array([[a ** k / np.prod([a - b for b in POINTS if b != a]) for k in range(3)]
               for a in POINTS] + [[0.0, 0.0, 1.0]])
_2, _4, _8 = np.float32(2.0), np.float32(4.0), np.float32(8.0)
_H, _Q, _E = np.float32(0.5), np.float32(0.25), np.float32(0.125)
_1H, _2H = np.float32(1.5), np.float32(2.5)


def applies(kh: int, kw: int, sh: int, sw: int, dh: int, dw: int) -> bool:
    """The Winograd path covers 3x3 kernels, stride 1, no dilation (any pads)."""
    return (kh, kw, sh, sw, dh, dw) == (3, 3, 1, 1, 1, 1)


def tiles(Ho: int, Wo: int) -> tuple[int, int]:
    return -(-Ho // TILE), -(-Wo // TILE)


def padded_channels(K: int) -> int:
    """V's channel stride: K rounded up to whole input-transform chunks."""
    return -(-K // CHUNK) * CHUNK


def scratch_size(Ho: int, Wo: int, C: int, F: int, Mp: int) -> int:
    """Floats of scratch the path needs: the padded h and x frames, one tile row's
    transformed inputs and products, the bias in panel order."""
    Ty, Tx = tiles(Ho, Wo)
    frame = (TILE * Ty + 2) * (TILE * Tx + 2)
    return frame * (C + F) + NPOS * Tx * padded_channels(C + F) + NPOS * Tx * Mp


def transform_weights(W_x: np.ndarray, W_h: np.ndarray, halve: bool = False) -> np.ndarray:
    """W_x (3, 3, C, 4F), W_h (3, 3, F, 4F) -> U (panels, 36, F+C, PANEL) float32, U[q, 6a+b]
    = (G g G^T)[a, b] over the channels [h | x], computed in float64 and rounded once;
    columns in conv_cell.gate_columns order (panel q: 4 gates x 16 filters), zeros past F,
    gates i, f, o halved with `halve` (conv_cell.permute_columns).
    The kernel reads one (K, PANEL) block per position."""
    W = np.concatenate([np.asarray(W_h, np.float64), np.asarray(W_x, np.float64)], axis=2)
    K, F = W.shape[2], W.shape[3] // 4
    U = np.einsum("ay,yxkm,bx->abkm", _G, W, _G).reshape(NPOS, K, 4 * F)
    full = permute_columns(U, F, halve)
    packed = full.reshape(NPOS, K, full.shape[-1] // PANEL, PANEL).transpose(2, 0, 1, 3)
    return np.ascontiguousarray(packed, np.float32)


@njit(inline="always", **KERNEL)
def _views6(a, base, stride, n):
    """Six views a[base + i*stride:][:n]. Indexing a view by a loop counter needs no
    negative-index wrap: with a[base + i*stride + j] LLVM kept the wrap selects and made
    gathers of the loads (output transform 367 -> 186 us per 64x64 frame)."""
    return (a[base:base + n], a[base + stride:base + stride + n],
            a[base + 2 * stride:base + 2 * stride + n], a[base + 3 * stride:base + 3 * stride + n],
            a[base + 4 * stride:base + 4 * stride + n], a[base + 5 * stride:base + 5 * stride + n])


@njit(inline="always", **KERNEL)
def _at_j(v, j):
    return (v[0][j], v[1][j], v[2][j], v[3][j], v[4][j], v[5][j])


@njit(inline="always", **KERNEL)
def _st6(a, base, stride, v):
    a[base] = v[0]
    a[base + stride] = v[1]
    a[base + 2 * stride] = v[2]
    a[base + 3 * stride] = v[3]
    a[base + 4 * stride] = v[4]
    a[base + 5 * stride] = v[5]


@njit(inline="always", **KERNEL)
def _bt(d):
    """B^T d for one line of 6 (points 0, 1, -1, 1/2, -2, infinity)."""
    return (d[0] - _1H * d[1] - _2 * d[2] + _1H * d[3] + d[4],
            _2H * d[3] + _H * d[2] - d[1] + d[4],
            d[1] - _2H * d[2] + _H * d[3] + d[4],
            _2 * (d[3] - d[1]) - d[2] + d[4],
            _H * (d[1] - d[3]) - d[2] + d[4],
            d[1] - _1H * d[2] - _2 * d[3] + _1H * d[4] + d[5])


@njit(**KERNEL)
def input_transform(src, Ww, Cs, ty, Tx, V, Kc, koff):
    """V[(t*36 + p)*Kc + koff + c] = (B^T d B)[p] for each tile t of tile row ty, d the 6x6
    patch of channel c of src (rows, Ww, Cs) at (4ty, 4t). The channel loop is innermost
    (contiguous loads, one vector for 16 channels) and writes a stack array: with 36 output
    streams into V, LLVM would not vectorise (too many run-time alias checks); with the
    stack array and _views6, 162 -> 55 us of thread time per 64x64x16 frame. V is tile-major
    with positions Kc = channels rounded up to CHUNK apart (padded_channels), so with one
    chunk (K <= 32) and koff = 0 a tile's 36 x 32 numbers go to V in one long vectorised
    copy instead of 36 copies of K = 17 that ran as scalar loops; the channels past Cs then
    hold garbage until input_transform_x writes them. Whole vectors of 16 channels (h of
    the benchmark frame) skip all that: LLVM IR straight from src into V
    (wino_ir.tile_input16, 42.8 -> 22.0 us per 64x64x16 frame)."""
    rs = Ww * Cs
    if Cs % FB == 0:
        for t in range(Tx):
            b0 = (TILE * ty * Ww + TILE * t) * Cs
            for c0 in range(0, Cs, FB):
                tile_input16(src, b0 + c0, Cs, rs, V, t * NPOS * Kc + koff + c0, Kc)
        return
    tmp = carray(_stack_f32(IN_TMP), IN_TMP)
    for t in range(Tx):
        for c0 in range(0, Cs, CHUNK):
            n = min(CHUNK, Cs - c0)
            b0 = (TILE * ty * Ww + TILE * t) * Cs + c0
            d0 = _views6(src, b0, Cs, n)           # row 0 of the patch, columns 0..5
            d1 = _views6(src, b0 + rs, Cs, n)
            d2 = _views6(src, b0 + 2 * rs, Cs, n)
            d3 = _views6(src, b0 + 3 * rs, Cs, n)
            d4 = _views6(src, b0 + 4 * rs, Cs, n)
            d5 = _views6(src, b0 + 5 * rs, Cs, n)
            for c in range(n):
                r0 = _bt(_at_j(d0, c))
                r1 = _bt(_at_j(d1, c))
                r2 = _bt(_at_j(d2, c))
                r3 = _bt(_at_j(d3, c))
                r4 = _bt(_at_j(d4, c))
                r5 = _bt(_at_j(d5, c))
                _st6(tmp, c, 6 * CHUNK, _bt((r0[0], r1[0], r2[0], r3[0], r4[0], r5[0])))
                _st6(tmp, c + CHUNK, 6 * CHUNK, _bt((r0[1], r1[1], r2[1], r3[1], r4[1], r5[1])))
                _st6(tmp, c + 2 * CHUNK, 6 * CHUNK, _bt((r0[2], r1[2], r2[2], r3[2], r4[2], r5[2])))
                _st6(tmp, c + 3 * CHUNK, 6 * CHUNK, _bt((r0[3], r1[3], r2[3], r3[3], r4[3], r5[3])))
                _st6(tmp, c + 4 * CHUNK, 6 * CHUNK, _bt((r0[4], r1[4], r2[4], r3[4], r4[4], r5[4])))
                _st6(tmp, c + 5 * CHUNK, 6 * CHUNK, _bt((r0[5], r1[5], r2[5], r3[5], r4[5], r5[5])))
            o = t * NPOS * Kc + koff + c0
            if Kc == CHUNK and koff == 0:  # the tile's 36 x CHUNK block of V is contiguous
                # (and its channels past n get garbage: a later pass writes them)
                vt = V[o:o + NPOS * CHUNK]
                for i in range(NPOS * CHUNK):
                    vt[i] = tmp[i]
            else:
                for p in range(NPOS):
                    vp = V[o + p * Kc:o + p * Kc + n]
                    tp = tmp[p * CHUNK:p * CHUNK + n]
                    for c in range(n):
                        vp[c] = tp[c]


@njit(**KERNEL)
def input_transform_x(src, Ww, Cs, ty, Tx, V, Kc, koff):
    """input_transform for the frame's few input channels (often 1), one scalar channel at a
    time: the vectorised form's per-tile setup cost 35 us per 64x64 frame for 1 channel,
    against 17 us here; below 16 channels as LLVM IR on scalars (wino_ir.tile_input1), whose
    straight-line code beat the Numba loop's by 7 us per frame (29.8 -> 22.9 us in 16 calls
    from Python, thread time)."""
    rs = Ww * Cs
    if Cs < FB:
        for t in range(Tx):
            b0 = (TILE * ty * Ww + TILE * t) * Cs
            for c in range(Cs):
                tile_input1(src, b0 + c, Cs, rs, V, t * NPOS * Kc + koff + c, Kc)
        return
    for t in range(Tx):
        for c in range(Cs):
            b = src[(TILE * ty * Ww + TILE * t) * Cs + c:]
            r0 = _bt((b[0], b[Cs], b[2 * Cs], b[3 * Cs], b[4 * Cs], b[5 * Cs]))
            r1 = _bt((b[rs], b[rs + Cs], b[rs + 2 * Cs], b[rs + 3 * Cs], b[rs + 4 * Cs], b[rs + 5 * Cs]))
            b2 = b[2 * rs:]
            r2 = _bt((b2[0], b2[Cs], b2[2 * Cs], b2[3 * Cs], b2[4 * Cs], b2[5 * Cs]))
            b3 = b[3 * rs:]
            r3 = _bt((b3[0], b3[Cs], b3[2 * Cs], b3[3 * Cs], b3[4 * Cs], b3[5 * Cs]))
            b4 = b[4 * rs:]
            r4 = _bt((b4[0], b4[Cs], b4[2 * Cs], b4[3 * Cs], b4[4 * Cs], b4[5 * Cs]))
            b5 = b[5 * rs:]
            r5 = _bt((b5[0], b5[Cs], b5[2 * Cs], b5[3 * Cs], b5[4 * Cs], b5[5 * Cs]))
            v = V[t * NPOS * Kc + koff + c:]
            for k in range(6):
                m = _bt((r0[k], r1[k], r2[k], r3[k], r4[k], r5[k]))
                _st6(v, k * Kc, 6 * Kc, m)


@njit(**KERNEL)
def products(V, K, Kc, Tx, w, u_off, P, Mp):
    """P[(t*36 + p)*Mp + j] = sum_k V[(t*36 + p)*Kc + k] * U[q, p, k, j - q*PANEL] for the 36
    positions p, U at w[u_off:] (transform_weights). Four tiles x one panel of sums stay in
    registers over the K rows and go straight to P (kernels/gemm_block.py: with the sums in
    a stack array, as linalg.panel_block_acc keeps them, 244 us per 64x64 frame, 181 here;
    the same floats, the same order of fused multiply-adds)."""
    for q in range(Mp // PANEL):
        for p in range(NPOS):
            ub = u_off + (q * NPOS + p) * K * PANEL
            t = 0
            while t + BLOCK <= Tx:
                panel_rows4(P, (t * NPOS + p) * Mp + q * PANEL, NPOS * Mp, V, (t * NPOS + p) * Kc,
                            NPOS * Kc, w, ub, K)
                t += BLOCK
            while t < Tx:
                panel_rows1(P, (t * NPOS + p) * Mp + q * PANEL, NPOS * Mp, V, (t * NPOS + p) * Kc,
                            NPOS * Kc, w, ub, K)
                t += 1


@njit(inline="always", **KERNEL)
def output_tile(P, Mp, t, q, bias, tmp):
    """tmp[gate*256 + (r*4 + x)*16 + f] = (A^T m A)[r, x] + bias for tile t, panel q (4
    gates x 16 filters, kernels/conv_cell.py), m the 36 products P[(t*36 + p)*Mp + q*PANEL
    + 16*gate + f]: gate-major, so one gate of a tile row's 4 pixels is 64 contiguous floats
    (conv_cell.cell64). The transform is LLVM IR (kernels/wino_ir.py)."""
    tile_gates(P, t * NPOS * Mp + q * PANEL, Mp, bias, q * PANEL, tmp)


@njit(**KERNEL)
def output_cell(P, Mp, Tx, bias, ty, Ho, Wo, F, c, h, cfg):
    """The gates of tile row ty (output_tile) and at once the cell on them, per tile and
    16-filter panel, while the 16 pixels x 64 gates are in L1: the gates never go to
    memory (a gate frame written and read back cost ~25 us per 64x64 frame)."""
    tmp = carray(_stack_f32(OUT_TMP), OUT_TMP)
    gs = TILE * TILE * FB  # gate stride in tmp
    rows = min(TILE, Ho - TILE * ty)
    for t in range(Tx):
        cols = min(TILE, Wo - TILE * t)
        for q in range(Mp // PANEL):
            output_tile(P, Mp, t, q, bias, tmp)
            if F == FB and cfg[0] == 0 and cols == TILE:
                so = (TILE * ty * Wo + TILE * t) * FB
                if rows == TILE:  # a constant count: the four loops unrolled, 126 -> 112 us
                    for r in range(TILE):  # per 64x64x16 frame
                        cell64(tmp, r * TILE * FB, gs, c, h, so + r * Wo * FB)
                    continue
                for r in range(rows):
                    cell64(tmp, r * TILE * FB, gs, c, h, so + r * Wo * FB)
                continue
            nf = min(FB, F - q * FB)
            for r in range(rows):
                row = (TILE * ty + r) * Wo
                for x in range(cols):
                    so = (row + TILE * t + x) * F + q * FB
                    cell_block(tmp, (r * TILE + x) * FB, gs, c, h, so, nf, cfg)
