"""Linear: y = x W + bias, optionally grouped (a grouped/batched linear, as exporters
write with Einsum `btgi,gih->btgh`).

Weights: W (I/G, O) with G = `groups` (default 1): for G = 1 the plain (in, out) matrix,
PyTorch `weight.T` (stored (in, out) so the mat-vec is a sum of rows, kernels/linalg.py);
for G > 1 the G blocks side by side: output column g*O/G + h of group g reads inputs
g*I/G ... (g+1)*I/G - 1, W[:, g*O/G + h] holding group g's weights. Keeping W 2-D keeps
one int8 scale per output column. Optional bias (O).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..kernels import KERNEL
from ..kernels.linalg import (NARROW, PANEL, WIDE_VECTORS, matmat_acc, matmat_narrow, matmat_packed,
                              matvec_packed, mv, pack_panels, set_bias)
from ..kernels.q16 import scratch_floats
from .base import IN, OUT, OpDef, Signature, SpecError, integer, new_row
from .recurrent import PACKED_MIN_ROWS

OPCODE = 1
# Row fields after IN, OUT: sizes, weight offsets, int8 scales of W (-1: float), scratch;
# W_PACKED: W packed by linalg.pack_panels for the step's mat-vec (-1: int8, grouped, or
# fewer than PANEL outputs). With few outputs matvec_cols reloads and stores its short `out`
# every four rows (a store-to-load chain): 128x64 0.35 -> 0.20 us packed; step() of
# LSTM(64,128)+Linear(128,64) 6.05 -> 5.98 us, LSTM(128,256)+Linear(256,128) 23.6 -> 23.4,
# GRU(64,128) 5.14 -> 5.05 (same process, thread time). A derived copy: W's memory once
# more, which these narrow heads hardly have; run() and chunks read it too (seq_panels).
IN_SIZE, OUT_SIZE, W, BIAS, W_SCALE, ACC, GROUPS, W_PACKED = range(3, 11)
# Widest Linear whose W gets the packed copy: from 512 outputs the two mat-vecs are level
# (64x512 1.27 vs 1.24 us, 128x1024 5.07 vs 5.05, aligned).
PACKED_MAX_OUT = 256


def spec(a: dict) -> Signature:
    i, o = integer(a, "in_features"), integer(a, "out_features")
    g = integer(a, "groups", default=1)
    if i % g or o % g:
        raise SpecError(f"groups {g} must divide in_features {i} and out_features {o}")
    return Signature([i], o, {"W": ((i // g, o), True), "bias": ((o,), False)})


def emit(em, node, ins: list[int], out: int, state: dict) -> None:
    a = node.attrs
    em.add_row(new_row(OPCODE, {
        IN: ins[0], OUT: out, IN_SIZE: a["in_features"], OUT_SIZE: a["out_features"],
        W: em.weight(node, "W"), BIAS: em.weight(node, "bias"), W_SCALE: em.scale(node, "W"),
        ACC: em.alloc(scratch_floats(node, a["out_features"], a["in_features"])),
        GROUPS: a.get("groups", 1),
        W_PACKED: em.derived(node, "W", "panels", pack_panels) if _packs(node) else -1}))


def _packs(node) -> bool:
    """Whether the step reads W packed (W_PACKED): float, one group, PANEL to
    PACKED_MAX_OUT outputs."""
    return (node.weights["W"].dtype == np.float32 and node.attrs.get("groups", 1) == 1
            and PANEL <= node.attrs["out_features"] <= PACKED_MAX_OUT)


@njit(inline="always", **KERNEL)
def step(prog, r, w, st, sc):
    i0 = prog[r, IN]
    o0 = prog[r, OUT]
    I = prog[r, IN_SIZE]
    O = prog[r, OUT_SIZE]
    G = prog[r, GROUPS]
    out = sc[o0:o0 + O]
    acc = sc[prog[r, ACC]:prog[r, ACC] + O]
    set_bias(out, w, prog[r, BIAS], O)
    if prog[r, W_PACKED] >= 0:
        matvec_packed(out, sc[i0:i0 + I], w, prog[r, W_PACKED], I, O)
    elif G == 1:
        mv(out, sc[i0:i0 + I], w, prog[r, W], prog[r, W_SCALE], I, O, np.int64(0), O, acc)
    else:  # group g: inputs [g*Ig, (g+1)*Ig) times columns [g*Og, (g+1)*Og) of W (Ig, O)
        Ig = I // G
        Og = O // G
        for g in range(G):
            mv(out[g * Og:(g + 1) * Og], sc[i0 + g * Ig:i0 + (g + 1) * Ig], w, prog[r, W],
               prog[r, W_SCALE], Ig, O, g * Og, Og, acc)


@njit(inline="always", **KERNEL)
def step_streams(prog, r, w, mem, S):
    """All streams at once (float weights): each weight read once per four streams."""
    if prog[r, W_SCALE] >= 0 or prog[r, GROUPS] != 1:
        return False
    n = mem.shape[0]
    i0 = S + prog[r, IN]
    o0 = S + prog[r, OUT]
    I = prog[r, IN_SIZE]
    O = prog[r, OUT_SIZE]
    for b in range(n):
        set_bias(mem[b, o0:o0 + O], w, prog[r, BIAS], O)
    if O < PANEL:  # a narrow head (16 outputs): matmat_narrow, 3x faster, same floats
        matmat_narrow(mem, o0, mem, i0, w, prog[r, W], I, O)
    else:
        matmat_acc(mem, o0, mem, i0, w, prog[r, W], I, O)
    return True


def project(x: np.ndarray, W: np.ndarray, b: np.ndarray | None,
            panels: np.ndarray | None = None) -> np.ndarray:
    """x (T, B, I) @ W (I, O) + b for every step at once, single-threaded in Numba
    (matmat_acc): numpy's multi-threaded BLAS stalled on a busy 2-core machine (16 us/step
    instead of 1.4, measured in benchmarks/), and this keeps run() deterministic and
    bit-identical per row to the step kernels. `panels`: W packed by pack_panels
    (seq_panels), read by matmat_packed instead, the same floats."""
    T, B, I = x.shape
    O = W.shape[1]
    y = np.empty((T * B, O), np.float32)
    if b is None:
        y[:] = 0.0
    else:
        y[:] = b
    xs = np.ascontiguousarray(x.reshape(T * B, I))
    if panels is not None:
        matmat_packed(y, np.int64(0), xs, np.int64(0), panels, np.int64(0), np.int64(I), np.int64(O))
    elif NARROW <= O < PANEL:  # a narrow head: LSTM (16,64) B=32's 64 -> 16 Linear in run()
        # 118 -> 35 ns per sequence-step (thread time), the same floats (matmat_narrow)
        matmat_narrow(y, np.int64(0), xs, np.int64(0), W.reshape(-1), np.int64(0), np.int64(I), np.int64(O))
    else:
        matmat_acc(y, 0, xs, 0, W.reshape(-1), 0, I, O)
    return y.reshape(T, B, O)


# Smallest W (rows) that seq_panels packs. matmat_packed against matmat_acc, N = 16..128
# vectors, AVX-512 (this machine, thread time): 256x2048 50-58 -> 98-99 GFLOP/s, 128x1024
# 56-77 -> 89-93, 512x256 75 -> 106, 256x128 70 -> 101, 64x512 75 -> 87; but 16x256
# 66 -> 45 (a short k loop per panel), so small inputs keep matmat_acc.
PANEL_MIN_ROWS = 64


def seq_panels(plan, node, role: str, x: np.ndarray) -> np.ndarray | None:
    """W = node.weights[role] packed for project(), or None where matmat_acc is the better
    kernel: without AVX-512 (matmat_packed's 4 x 64 sums spill AVX2's 16 registers,
    linalg.WIDE_VECTORS), for small W, and for batches (x (T, B, I) with B > 1, the batched
    run() path, left as it was). Made once per model on first use (plan.panels)."""
    W = node.weights[role]
    if (not WIDE_VECTORS or x.shape[1] != 1 or W.dtype != np.float32
            or W.shape[0] < PANEL_MIN_ROWS or W.shape[1] < PANEL):
        return None
    key = (node.name, role)
    if key not in plan.panels:
        row = plan.prog[plan.node_rows[node.name]]
        if node.op == "Linear" and row[W_PACKED] >= 0:  # the step's packed copy (W_PACKED)
            plan.panels[key] = plan.arena[row[W_PACKED]:row[W_PACKED] + W.size]
        else:
            plan.panels[key] = pack_panels(W)
    return plan.panels[key]


def arena_panels(plan, off: int, W: np.ndarray) -> np.ndarray | None:
    """The packed copy of W kept in the weight arena at `off` (-1: none) for project()."""
    return None if off < 0 else plan.arena[off:off + W.size]


def run_sequence(plan, node, ins: list[np.ndarray], lengths: np.ndarray) -> np.ndarray:
    W, b, G = node.weights["W"], node.weights.get("bias"), node.attrs.get("groups", 1)
    if G == 1:
        x = ins[0]
        if x.shape[1] > 1 and W.dtype == np.float32 and min(W.shape) >= PACKED_MIN_ROWS and WIDE_VECTORS:
            # a batch (not a one-stream chunk): packed per call, a copy of W that costs ~0.1%
            # of the product; a 512 -> 256 head on LSTM (256,512) B=32: 47 -> ~90 GFLOP/s
            return project(x, W, b, pack_panels(W))
        return project(x, W, b, seq_panels(plan, node, "W", x))
    x = ins[0]
    Ig, Og = x.shape[-1] // G, W.shape[1] // G
    return np.concatenate(
        [project(np.ascontiguousarray(x[..., g * Ig:(g + 1) * Ig]),
                 np.ascontiguousarray(W[:, g * Og:(g + 1) * Og]),
                 None if b is None else b[g * Og:(g + 1) * Og]) for g in range(G)], axis=-1)


def describe(node, out_size: int) -> str:
    a = node.attrs
    groups = f" ({a['groups']} groups)" if a.get("groups", 1) > 1 else ""
    return f"Linear {a['in_features']}->{a['out_features']}{groups}"


OPS = (OpDef("Linear", spec, emit, matrix_roles=("W",), run_sequence=run_sequence,
             describe=describe),)
