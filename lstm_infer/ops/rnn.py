"""RNN (Elman): h = act(x W_ih + h W_hh + bias), act tanh or relu, or an ONNX activation.

Weights (docs/FORMAT.md): W_ih (I, H) = weight_ih.T; W_hh (H, H) = weight_hh.T;
bias (H) = bias_ih + bias_hh; h0 (H). State: h (H). W_ih, W_hh may be int8.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..kernels import KERNEL
from ..kernels.activations import clipv, fast_tanh, gate_act
from ..kernels.linalg import WIDE_VECTORS, matmat_acc, matmat_packed, matmat_w_hh, matvec_packed, mv, set_bias
from ..kernels.q16 import scratch_floats
from .base import IN, OUT, OpDef, Signature, SpecError, integer, new_row
from .linear import project
from .recurrent import CFG_SIZE, check_options, full_length, packed_copy

OPCODE = 4
# Row fields after IN, OUT; ACC: scratch for int8 accumulators.
# W_HH_PACKED: a float W_hh packed by linalg.pack_panels (-1 for int8), for the one-sequence
# mat-vec.
(IN_SIZE, HIDDEN, W_IH, W_HH, BIAS, STATE_H, CFG, W_IH_SCALE, W_HH_SCALE, ACC,
 W_HH_PACKED) = range(3, 14)


def spec(a: dict) -> Signature:
    i, h = integer(a, "input_size"), integer(a, "hidden_size")
    if a.get("nonlinearity", "tanh") not in ("tanh", "relu"):
        raise SpecError(f"nonlinearity must be 'tanh' or 'relu', got {a.get('nonlinearity')!r}")
    check_options(a, 1)
    return Signature([i], h, {"W_ih": ((i, h), True), "W_hh": ((h, h), True),
                              "bias": ((h,), False), "h0": ((h,), False)},
                     state={"h": (h, "h0")})


def emit(em, node, ins: list[int], out: int, state: dict) -> None:
    a = node.attrs
    H = a["hidden_size"]
    em.add_row(new_row(OPCODE, {
        IN: ins[0], OUT: out, IN_SIZE: a["input_size"], HIDDEN: H, W_IH: em.weight(node, "W_ih"),
        W_HH: em.weight(node, "W_hh"), BIAS: em.weight(node, "bias"), STATE_H: state["h"],
        CFG: em.cell_config(node), W_IH_SCALE: em.scale(node, "W_ih"),
        W_HH_SCALE: em.scale(node, "W_hh"), ACC: em.alloc(scratch_floats(node, H, a["input_size"], H)),
        W_HH_PACKED: packed_copy(em, node, "W_hh")}))


@njit(**KERNEL)
def rnn_pointwise(acc, h, out, H, cfg):
    """h = f(clip(acc)); default f = tanh; writes h and out."""
    if cfg[0] == 0:
        for j in range(H):
            v = fast_tanh(acc[j])
            h[j] = v
            out[j] = v
        return
    clip = cfg[1]
    fk, fa, fb = int(cfg[4]), cfg[5], cfg[6]
    for j in range(H):
        v = gate_act(clipv(acc[j], clip), fk, fa, fb)
        h[j] = v
        out[j] = v


@njit(inline="always", **KERNEL)
def step(prog, r, w, st, sc):
    i0 = prog[r, IN]
    o0 = prog[r, OUT]
    I = prog[r, IN_SIZE]
    H = prog[r, HIDDEN]
    h = st[prog[r, STATE_H]:prog[r, STATE_H] + H]
    cfg = w[prog[r, CFG]:prog[r, CFG] + CFG_SIZE]
    out = sc[o0:o0 + H]
    acc = sc[prog[r, ACC]:prog[r, ACC] + H]
    set_bias(out, w, prog[r, BIAS], H)
    mv(out, sc[i0:i0 + I], w, prog[r, W_IH], prog[r, W_IH_SCALE], I, H, np.int64(0), H, acc)
    if prog[r, W_HH_PACKED] >= 0:
        matvec_packed(out, h, w, prog[r, W_HH_PACKED], H, H)
    else:
        mv(out, h, w, prog[r, W_HH], prog[r, W_HH_SCALE], H, H, np.int64(0), H, acc)
    rnn_pointwise(out, h, out, H, cfg)


@njit(inline="always", **KERNEL)
def step_streams(prog, r, w, mem, S):
    """All streams at once (float weights); returns False (not handled) for int8."""
    if prog[r, W_IH_SCALE] >= 0 or prog[r, W_HH_SCALE] >= 0:
        return False
    n = mem.shape[0]
    i0 = S + prog[r, IN]
    o0 = S + prog[r, OUT]
    I = prog[r, IN_SIZE]
    H = prog[r, HIDDEN]
    h0 = prog[r, STATE_H]
    cfg = w[prog[r, CFG]:prog[r, CFG] + CFG_SIZE]
    for b in range(n):
        set_bias(mem[b, o0:o0 + H], w, prog[r, BIAS], H)
    matmat_acc(mem, o0, mem, i0, w, prog[r, W_IH], I, H)
    matmat_w_hh(mem, o0, mem, h0, w, prog[r, W_HH], prog[r, W_HH_PACKED], H, H)
    for b in range(n):
        row = mem[b]
        rnn_pointwise(row[o0:o0 + H], row[h0:h0 + H], row[o0:o0 + H], H, cfg)
    return True


@njit(**KERNEL)
def rnn_sequence(gx, w_hh, hs, reverse, lengths, cfg, out, arena, packed):
    """gx (T, B, H) = x W_ih + bias; h = f(gx + h W_hh); hs (B, H) the state each sequence
    starts from, updated in place to its state after its last step. One sequence at a time,
    W_hh is read packed from arena[packed:] (linalg.matvec_packed)."""
    T, B, H = gx.shape
    whh = w_hh.ravel()
    acc = np.empty(H, np.float32)
    y = np.empty(H, np.float32)
    if B > 1 and full_length(lengths, T):
        ab = np.empty((B, H), np.float32)
        for s in range(T):
            t = T - 1 - s if reverse else s
            ab[:, :] = gx[t]
            if WIDE_VECTORS and packed >= 0:
                matmat_packed(ab, np.int64(0), hs, np.int64(0), arena, packed, H, H)
            else:
                matmat_acc(ab, np.int64(0), hs, np.int64(0), whh, np.int64(0), H, H)
            for b in range(B):
                rnn_pointwise(ab[b], hs[b], y, H, cfg)
            out[t] = hs
        return
    for b in range(B):
        h = hs[b]
        L = lengths[b]
        for s in range(L):
            t = L - 1 - s if reverse else s
            for j in range(H):
                acc[j] = gx[t, b, j]
            matvec_packed(acc, h, arena, packed, H, H)
            rnn_pointwise(acc, h, y, H, cfg)
            for j in range(H):
                out[t, b, j] = y[j]


def run_sequence(plan, node, ins: list[np.ndarray], lengths: np.ndarray,
                 state: dict) -> np.ndarray:
    """Whole sequences: one input projection for all steps, then the recurrence, from
    `state` (slot -> (B, size), model.initial_state), updated in place."""
    a, w = node.attrs, node.weights
    x = ins[0]
    T, B, _ = x.shape
    H = a["hidden_size"]
    out = np.zeros((T, B, H), np.float32)
    rnn_sequence(project(x, w["W_ih"], w.get("bias")), w["W_hh"],
                 state["h"],
                 bool(a.get("reverse")), lengths, plan.cfg[node.name], out, plan.arena,
                 plan.prog[plan.node_rows[node.name], W_HH_PACKED])
    return out


def describe(node, out_size: int) -> str:
    a = node.attrs
    return f"RNN({a.get('nonlinearity', 'tanh')}) {a['input_size']}->{a['hidden_size']}"


OPS = (OpDef("RNN", spec, emit, recurrent=True, matrix_roles=("W_ih", "W_hh"),
             run_sequence=run_sequence, describe=describe),)
