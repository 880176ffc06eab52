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
from ..kernels.linalg import WIDE_VECTORS, matmat_acc, matmat_packed, mv, pack_panels, set_bias
from .base import IN, OUT, OpDef, Signature, SpecError, integer, new_row
from .recurrent import PACKED_MIN_ROWS

OPCODE = 1
# Row fields after IN, OUT: sizes, weight offsets, int8 scales of W (-1: float), scratch
IN_SIZE, OUT_SIZE, W, BIAS, W_SCALE, ACC, GROUPS = range(3, 10)


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
        ACC: em.alloc(a["out_features"]), GROUPS: a.get("groups", 1)}))


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
    if G == 1:
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
    matmat_acc(mem, o0, mem, i0, w, prog[r, W], I, O)
    return True


def project(x: np.ndarray, W: np.ndarray, b: np.ndarray | None, arena: np.ndarray | None = None,
            packed: int = -1) -> np.ndarray:
    """x (T, B, I) @ W (I, O) + b for every step at once, single-threaded in Numba
    (matmat_acc): numpy's multi-threaded BLAS stalled on a busy 2-core machine (16 us/step
    instead of 1.4, measured in benchmarks/), and this keeps run() deterministic and
    bit-identical per row to the step kernels. With W packed by pack_panels at
    arena[packed:] (packed >= 0: AVX-512 only, recurrent.input_packed_copy) the rows go
    through matmat_packed, the same sums in the same order: 2-4x faster on T*B rows."""
    T, B, I = x.shape
    O = W.shape[1]
    y = np.empty((T * B, O), np.float32)
    if b is None:
        y[:] = 0.0
    else:
        y[:] = b
    xs = np.ascontiguousarray(x.reshape(T * B, I))
    if arena is not None and packed >= 0:
        matmat_packed(y, 0, xs, 0, arena, packed, I, O)
    else:
        matmat_acc(y, 0, xs, 0, W.reshape(-1), 0, I, O)
    return y.reshape(T, B, O)


def run_sequence(plan, node, ins: list[np.ndarray], lengths: np.ndarray) -> np.ndarray:
    W, b, G = node.weights["W"], node.weights.get("bias"), node.attrs.get("groups", 1)
    if G == 1:
        x = ins[0]
        if x.shape[1] > 1 and W.dtype == np.float32 and min(W.shape) >= PACKED_MIN_ROWS and WIDE_VECTORS:
            # a batch (not a one-stream chunk): packed per call, a copy of W that costs ~0.1%
            # of the product; a 512 -> 256 head on LSTM (256,512) B=32: 47 -> ~90 GFLOP/s
            return project(x, W, b, pack_panels(W), 0)
        return project(x, W, b)
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
