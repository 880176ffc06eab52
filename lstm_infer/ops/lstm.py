"""LSTM: PyTorch gate order i, f, g, o, with ONNX's options (peepholes, clip, coupled
input/forget gates, other gate activations), a projection (proj_size) and output_cell.

Weights (docs/FORMAT.md): W_ih (I, 4H) = weight_ih.T; W_hh (R, 4H) = weight_hh.T with
R = P or H; bias (4H) = bias_ih + bias_hh; W_hr (H, P) = weight_hr.T; peephole (3H) in
the order i, f, o; h0 (R), c0 (H). State: h (R), c (H). Output h, or [h, c] with
output_cell. W_ih, W_hh, W_hr may be int8 with per-column scales.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..kernels import BORROWING, KERNEL
from ..kernels.activations import clipv, fast_sigmoid, fast_tanh, gate_act
from ..kernels.linalg import (PANEL, WIDE_VECTORS, matmat_acc, matmat_packed, matmat_w_hh,
                              matvec_acc, matvec_packed, matvec_packed_snake, mv, set_bias)
from ..kernels.matmat_fma import matmat_fma2
from ..kernels.q16 import scratch_floats
from .base import IN, OUT, OpDef, Signature, boolean, integer, new_row
from .linear import arena_panels, project, seq_panels
from .recurrent import (CFG_SIZE, check_options, for_matmat_packed, full_length, input_packed_copy,
                        packed_copy)

OPCODE = 2
# Row fields after IN, OUT. *_SCALE: per-column scales of an int8 matrix (-1: float32);
# GATES, HFULL, ACC: scratch; STATE_H, STATE_C: offsets in the stream's state row.
# W_HH_PACKED: a float W_hh packed by linalg.pack_panels (-1 for int8), for the one-sequence
# mat-vec (step and run()/chunks of one sequence). W_IH_PACKED: W_ih packed the same way for
# the batched products (streams(n), run() on a batch; -1 without AVX-512 or for int8).
(IN_SIZE, HIDDEN, PROJ, W_IH, W_HH, BIAS, W_HR, STATE_H, STATE_C, GATES, HFULL, CFG, PEEPHOLE,
 W_IH_SCALE, W_HH_SCALE, W_HR_SCALE, ACC, OUTPUT_CELL, W_HH_PACKED, W_IH_PACKED) = range(3, 23)


def spec(a: dict) -> Signature:
    i, h = integer(a, "input_size"), integer(a, "hidden_size")
    p = integer(a, "proj_size", lo=0, default=0)
    check_options(a, 3)
    boolean(a, "input_forget")
    cell = boolean(a, "output_cell")
    r = p or h
    w = {"W_ih": ((i, 4 * h), True), "W_hh": ((r, 4 * h), True), "bias": ((4 * h,), False),
         "h0": ((r,), False), "c0": ((h,), False), "peephole": ((3 * h,), False)}
    if p:
        w["W_hr"] = ((h, p), True)
    return Signature([i], r + (h if cell else 0), w, state={"h": (r, "h0"), "c": (h, "c0")})


def emit(em, node, ins: list[int], out: int, state: dict) -> None:
    a = node.attrs
    H, P = a["hidden_size"], a.get("proj_size", 0)
    em.add_row(new_row(OPCODE, {
        IN: ins[0], OUT: out, IN_SIZE: a["input_size"], HIDDEN: H, PROJ: P,
        W_IH: em.weight(node, "W_ih"), W_HH: em.weight(node, "W_hh"), BIAS: em.weight(node, "bias"),
        W_HR: em.weight(node, "W_hr"), STATE_H: state["h"], STATE_C: state["c"],
        GATES: em.alloc(4 * H), HFULL: em.alloc(H) if P else -1, CFG: em.cell_config(node),
        PEEPHOLE: em.weight(node, "peephole"), W_IH_SCALE: em.scale(node, "W_ih"),
        W_HH_SCALE: em.scale(node, "W_hh"), W_HR_SCALE: em.scale(node, "W_hr"),
        ACC: em.alloc(scratch_floats(node, 4 * H, a["input_size"], P or H, H)),
        OUTPUT_CELL: int(bool(a.get("output_cell"))),
        W_HH_PACKED: packed_copy(em, node, "W_hh"),
        W_IH_PACKED: input_packed_copy(em, node)}))


@njit(**BORROWING)
def lstm_pointwise_general(gates, c, hfull, H, cfg, peep):
    """ONNX semantics: peepholes, clip, coupled input/forget gates, any activations."""
    clip = cfg[1]
    coupled = cfg[2] != 0
    has_peep = cfg[3] != 0
    fk, fa, fb = int(cfg[4]), cfg[5], cfg[6]
    gk, ga, gb = int(cfg[7]), cfg[8], cfg[9]
    hk, ha, hb = int(cfg[10]), cfg[11], cfg[12]
    for j in range(H):
        cp = c[j]
        gi = gates[j]
        gf = gates[H + j]
        go = gates[3 * H + j]
        if has_peep:
            gi += peep[j] * cp
            gf += peep[H + j] * cp
        ig = gate_act(clipv(gi, clip), fk, fa, fb)
        if coupled:
            fg = np.float32(1.0) - ig
        else:
            fg = gate_act(clipv(gf, clip), fk, fa, fb)
        gg = gate_act(clipv(gates[2 * H + j], clip), gk, ga, gb)
        cj = fg * cp + ig * gg
        if has_peep:
            go += peep[2 * H + j] * cj
        og = gate_act(clipv(go, clip), fk, fa, fb)
        c[j] = cj
        hfull[j] = og * gate_act(cj, hk, ha, hb)


@njit(inline="always", **KERNEL)
def _cell(gates, c, hfull, H):
    """The default cell (no ONNX options), shared by lstm_pointwise and _batch_cells."""
    gi = gates[0:H]  # sliced so each index is a plain j >= 0 (see matvec_acc)
    gf = gates[H:2 * H]
    gg = gates[2 * H:3 * H]
    go = gates[3 * H:4 * H]
    for j in range(H):
        cj = fast_sigmoid(gf[j]) * c[j] + fast_sigmoid(gi[j]) * fast_tanh(gg[j])
        c[j] = cj
        hfull[j] = fast_sigmoid(go[j]) * fast_tanh(cj)


@njit(**BORROWING)
def lstm_pointwise(gates, c, hfull, H, cfg, peep):
    """PyTorch gate order i, f, g, o: c = f*c + i*g; hfull = o*tanh(c). Updates c in place."""
    if cfg[0] != 0:
        lstm_pointwise_general(gates, c, hfull, H, cfg, peep)
        return
    _cell(gates, c, hfull, H)


@njit(inline="always", **KERNEL)
def step(prog, r, w, st, sc):
    """One step of one stream: gates = x W_ih + h W_hh + bias, the cell, the projection."""
    i0 = prog[r, IN]
    o0 = prog[r, OUT]
    I = prog[r, IN_SIZE]
    H = prog[r, HIDDEN]
    P = prog[r, PROJ]
    R = P if P > 0 else H
    g0 = prog[r, GATES]
    gates = sc[g0:g0 + 4 * H]
    h = st[prog[r, STATE_H]:prog[r, STATE_H] + R]
    c = st[prog[r, STATE_C]:prog[r, STATE_C] + H]
    cfg = w[prog[r, CFG]:prog[r, CFG] + CFG_SIZE]
    p0 = prog[r, PEEPHOLE]
    peep = w[p0:p0 + 3 * H] if p0 >= 0 else w[0:0]
    acc = sc[prog[r, ACC]:prog[r, ACC] + 4 * H]
    set_bias(gates, w, prog[r, BIAS], 4 * H)
    mv(gates, sc[i0:i0 + I], w, prog[r, W_IH], prog[r, W_IH_SCALE], I, 4 * H, np.int64(0), 4 * H, acc)
    if prog[r, W_HH_PACKED] >= 0:
        matvec_packed(gates, h, w, prog[r, W_HH_PACKED], R, 4 * H)
    else:
        mv(gates, h, w, prog[r, W_HH], prog[r, W_HH_SCALE], R, 4 * H, np.int64(0), 4 * H, acc)
    if P > 0:
        hf0 = prog[r, HFULL]
        hfull = sc[hf0:hf0 + H]
        lstm_pointwise(gates, c, hfull, H, cfg, peep)
        set_bias(h, w, np.int64(-1), P)
        mv(h, hfull, w, prog[r, W_HR], prog[r, W_HR_SCALE], H, P, np.int64(0), P, acc)
    else:
        lstm_pointwise(gates, c, h, H, cfg, peep)
    out = sc[o0:o0 + R]
    for j in range(R):
        out[j] = h[j]
    if prog[r, OUTPUT_CELL]:
        outc = sc[o0 + R:o0 + R + H]
        for j in range(H):
            outc[j] = c[j]


@njit(inline="always", **KERNEL)
def step_streams(prog, r, w, mem, S, tmp):
    """All streams at once (float weights): the mat-vecs as matmat_acc, bit-identical per
    stream to step(). Returns False (not handled) for int8 weights. Stream b's gates go to
    row b of `tmp` (cache-resident rows shared by all blocks, as in ops/gru.py)."""
    if prog[r, W_IH_SCALE] >= 0 or prog[r, W_HH_SCALE] >= 0 or prog[r, W_HR_SCALE] >= 0:
        return False
    n = mem.shape[0]
    i0 = S + prog[r, IN]
    o0 = S + prog[r, OUT]
    I = prog[r, IN_SIZE]
    H = prog[r, HIDDEN]
    P = prog[r, PROJ]
    R = P if P > 0 else H
    g0 = S + prog[r, GATES]
    h0 = prog[r, STATE_H]
    c0 = prog[r, STATE_C]
    cfg = w[prog[r, CFG]:prog[r, CFG] + CFG_SIZE]
    p0 = prog[r, PEEPHOLE]
    peep = w[p0:p0 + 3 * H] if p0 >= 0 else w[0:0]
    for b in range(n):
        set_bias(tmp[b, g0:g0 + 4 * H], w, prog[r, BIAS], 4 * H)
    # Not a fused product of both matrices here (an earlier exact one, matmat_packed2,
    # re-emitted into the interpreter made a cold `lstm-infer compile` 83.6 s CPU instead of
    # 70.5); W_ih packed from 64 inputs.
    p_ih = for_matmat_packed(prog[r, W_IH_PACKED], I)
    matmat_w_hh(tmp, g0, mem, i0, w, prog[r, W_IH], p_ih, I, 4 * H)
    matmat_w_hh(tmp, g0, mem, h0, w, prog[r, W_HH], prog[r, W_HH_PACKED], R, 4 * H)
    hf0 = S + prog[r, HFULL]
    for b in range(n):  # a call per stream: the cell inlined here cost ~7 s of a cold compile
        row = mem[b]
        hout = row[hf0:hf0 + H] if P > 0 else row[h0:h0 + H]
        lstm_pointwise(tmp[b, g0:g0 + 4 * H], row[c0:c0 + H], hout, H, cfg, peep)
        if P > 0:
            set_bias(row[h0:h0 + P], w, np.int64(-1), P)
    if P > 0:
        matmat_acc(mem, h0, mem, hf0, w, prog[r, W_HR], H, P)
    for b in range(n):
        row = mem[b]
        for j in range(R):
            row[o0 + j] = row[h0 + j]
        if prog[r, OUTPUT_CELL]:
            for j in range(H):
                row[o0 + R + j] = row[c0 + j]
    return True


@njit(inline="always", **KERNEL)
def _batch_cells(gb, hs, cs, hf, whr, H, P, cfg, peep, out_t):
    """The cells of a batch's step from its gates gb (B, 4H): c, h (projected when P > 0),
    and the step's outputs out_t (B, R [+ H])."""
    R = hs.shape[1]
    hout = hf if P > 0 else hs
    if cfg[0] == 0:  # the default cell inlined: a call per row cost 32-38 ns per sequence-step
        for b in range(gb.shape[0]):  # (H=8..64, B=32, thread time), same floats
            _cell(gb[b], cs[b], hout[b], H)
    else:
        for b in range(gb.shape[0]):
            lstm_pointwise(gb[b], cs[b], hout[b], H, cfg, peep)
    if P > 0:
        hs[:, :] = 0.0
        matmat_acc(hs, np.int64(0), hf, np.int64(0), whr, np.int64(0), H, P)
    out_t[:, :R] = hs
    if out_t.shape[1] > R:
        out_t[:, R:] = cs


@njit(**KERNEL)
def lstm_batch(x, bias, arena, p_ih, p_hh, w_ih, w_hh, w_hr, hs, cs, reverse, cfg, peep, out):
    """A batch of full-length sequences, x (T, B, I), with W_ih and W_hh packed at
    arena[p_ih:], arena[p_hh:] (AVX-512): each step's gates = bias + x[t] W_ih + h W_hh in one
    pass over both matrices. Replaces the projection of all steps (a (T, B, 4H) array
    written, then read back) plus the recurrent product: 8-20% less time per block of 64
    steps, B=32, than project + lstm_sequence (thread time, interleaved: (1,8) 119 -> 95 ns
    per sequence-step, (16,64) 818 -> 723, (64,128) 3273 -> 2836). The pass is matmat_fma2,
    one FMA chain per gate (not step()'s four-term partial sums, which spill registers):
    within 1e-5 of lone sequences, not bit-identical; run() of LSTM (16,64)+Linear B=32
    ~661 -> ~590 ns per sequence-step (thread time). Under 64 gate columns (no full panel) two
    matmat_acc, step()'s sums exactly.
    hs, cs, w_hr, out as in lstm_sequence; w_ih (I, 4H), w_hh (R, 4H) row-major."""
    T, B, I = x.shape
    G = bias.shape[0]
    H = G // 4
    R = hs.shape[1]
    P = w_hr.shape[1]
    whr = w_hr.ravel()
    wih = w_ih.ravel()
    whh = w_hh.ravel()
    gb = np.empty((B, G), np.float32)
    hf = np.empty((B, H), np.float32)
    # The default cell without projection writes h straight into the step's output rows and
    # the next step reads it there (x_off 0 of rows R [+ H] long): no h copy per step, LSTM
    # (16,64) B=32 ~2% of run() (thread time); hs gets the last h at the end.
    direct = P == 0 and cfg[0] == 0
    hp = hs
    for s in range(T):
        t = T - 1 - s if reverse else s
        if G >= PANEL:
            matmat_fma2(gb, bias, x[t], arena, p_ih, I, hp, p_hh, R, G)
        else:  # no full panel: matmat_fma2 would go row by row; 4 rows per weight pass here
            for b in range(B):
                row = gb[b]
                for j in range(G):
                    row[j] = bias[j]
            matmat_acc(gb, np.int64(0), x[t], np.int64(0), wih, np.int64(0), I, G)
            matmat_acc(gb, np.int64(0), hp, np.int64(0), whh, np.int64(0), R, G)
        if direct:
            ot = out[t]
            for b in range(B):
                _cell(gb[b], cs[b], ot[b], H)
            if ot.shape[1] > R:
                ot[:, R:] = cs
            hp = ot
        else:
            _batch_cells(gb, hs, cs, hf, whr, H, P, cfg, peep, out[t])
    if direct and T > 0:
        hs[:, :] = hp[:, :R]


@njit(**KERNEL)
def lstm_sequence(gx, w_hh, w_hr, hs, cs, reverse, lengths, cfg, peep, out, arena, packed):
    """gx (T, B, 4H) = x W_ih + bias; w_hh (R, 4H); w_hr (H, P) or (0, 0); out (T, B, R),
    or (T, B, R + H) to also output the cell state after h. hs (B, R), cs (B, H): the state
    each sequence starts from, updated in place to its state after its last step. One
    sequence at a time, W_hh is read packed from arena[packed:], its panels in alternating
    order (linalg.matvec_packed_snake)."""
    T, B, G = gx.shape
    H = G // 4
    R = w_hh.shape[0]
    P = w_hr.shape[1]
    whh = w_hh.ravel()
    whr = w_hr.ravel()
    if B > 1 and full_length(lengths, T):
        hf = np.empty((B, H), np.float32)
        for s in range(T):
            t = T - 1 - s if reverse else s
            gb = gx[t]  # the recurrent product adds into the projection in place (no copy)
            if WIDE_VECTORS and packed >= 0:
                matmat_packed(gb, np.int64(0), hs, np.int64(0), arena, packed, R, G)
            else:
                matmat_acc(gb, np.int64(0), hs, np.int64(0), whh, np.int64(0), R, G)
            _batch_cells(gb, hs, cs, hf, whr, H, P, cfg, peep, out[t])
        return
    gates = np.empty(G, np.float32)
    hfull = np.empty(H, np.float32)
    for b in range(B):
        h = hs[b]
        c = cs[b]
        L = lengths[b]
        for s in range(L):
            t = L - 1 - s if reverse else s
            for j in range(G):
                gates[j] = gx[t, b, j]
            matvec_packed_snake(gates, h, arena, packed, R, G, s % 2 == 1)
            if P > 0:
                lstm_pointwise(gates, c, hfull, H, cfg, peep)
                set_bias(h, whr, np.int64(-1), P)
                matvec_acc(h, hfull, whr, np.int64(0), H, P)
            else:
                lstm_pointwise(gates, c, h, H, cfg, peep)
            for j in range(R):
                out[t, b, j] = h[j]
            if out.shape[2] > R:
                for j in range(H):
                    out[t, b, R + j] = c[j]


def run_sequence(plan, node, ins: list[np.ndarray], lengths: np.ndarray,
                 state: dict) -> np.ndarray:
    """Whole sequences: one input projection for all steps, then the recurrence. `state`
    (slot -> (B, size)) is the state to start from, updated in place (model.initial_state)."""
    a, w = node.attrs, node.weights
    x = ins[0]
    T, B, _ = x.shape
    H, P = a["hidden_size"], a.get("proj_size", 0)
    shape = (T, B, (P or H) + (H if a.get("output_cell") else 0))
    whr = w.get("W_hr", np.zeros((0, 0), np.float32))
    peep = w.get("peephole", np.zeros(0, np.float32))
    row = plan.prog[plan.node_rows[node.name]]
    if B > 1 and row[W_IH_PACKED] >= 0 and row[W_HH_PACKED] >= 0 and bool((lengths == T).all()):
        bias = w.get("bias")
        out = np.empty(shape, np.float32)  # all written; np.zeros cleared 512 KB a block, (16,64)
        lstm_batch(np.ascontiguousarray(x), np.zeros(4 * H, np.float32) if bias is None else bias,
                   plan.arena, row[W_IH_PACKED], row[W_HH_PACKED], w["W_ih"], w["W_hh"],
                   np.ascontiguousarray(whr),
                   state["h"], state["c"], bool(a.get("reverse")), plan.cfg[node.name],
                   np.ascontiguousarray(peep), out)
        return out
    out = np.zeros(shape, np.float32)
    # one sequence (and Stream.step_many's chunks): seq_panels; a batch: the W_IH_PACKED copy
    # from PACKED_MIN_ROWS inputs
    if B == 1:
        panels = seq_panels(plan, node, "W_ih", x)
    else:
        panels = arena_panels(plan, for_matmat_packed(row[W_IH_PACKED], a["input_size"]),
                              w["W_ih"])
    gx = project(x, w["W_ih"], w.get("bias"), panels)
    lstm_sequence(gx, w["W_hh"], np.ascontiguousarray(whr), state["h"], state["c"],
                  bool(a.get("reverse")), lengths, plan.cfg[node.name], np.ascontiguousarray(peep),
                  out, plan.arena, row[W_HH_PACKED])
    return out


def describe(node, out_size: int) -> str:
    a = node.attrs
    return f"LSTM {a['input_size']}->{a['hidden_size']}" + (
        f" proj {a['proj_size']}" if a.get("proj_size") else "") + (
        " peephole" if "peephole" in node.weights else "")


OPS = (OpDef("LSTM", spec, emit, recurrent=True, matrix_roles=("W_ih", "W_hh", "W_hr"),
             run_sequence=run_sequence, describe=describe),)
