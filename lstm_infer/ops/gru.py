"""GRU: PyTorch gate order r, z, n; reset-after (`linear_before_reset`, PyTorch) or
reset-before (ONNX's default), with ONNX's clip and gate activations.

Weights (docs/FORMAT.md): W_ih (I, 3H) = weight_ih.T; W_hh (H, 3H) = weight_hh.T;
b_ih, b_hh (3H) kept apart (reset-after multiplies b_hn by r); h0 (H). State: h (H).
W_ih, W_hh may be int8 with per-column scales.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..kernels import BORROWING, KERNEL
from ..kernels.activations import clipv, fast_sigmoid, fast_tanh, gate_act
from ..kernels.linalg import (PANEL, fill_bias, matmat_acc, matmat_w_hh, matvec_packed, matvec_packed_snake,
                              mv, set_bias)
from ..kernels.matmat_fma import matmat_fma2
from ..kernels.q16 import scratch_floats
from .base import IN, OUT, OpDef, Signature, boolean, integer, new_row
from .linear import arena_panels, project, seq_panels
from .recurrent import (CFG_SIZE, check_options, for_matmat_packed, full_length, input_packed_copy,
                        packed_copy)

OPCODE = 3
# Row fields after IN, OUT. LBR: linear_before_reset; GX, GH, RH, ACC: scratch.
# W_HH_PACKED: W_hh packed by linalg.pack_panels for the one-sequence mat-vec (-1 for int8
# and for the reset-before form, whose mat-vec is split by columns). W_IH_PACKED: W_ih packed
# for the batched products (streams(n), run() on a batch; -1 without AVX-512 or for int8).
(IN_SIZE, HIDDEN, LBR, W_IH, W_HH, B_IH, B_HH, STATE_H, GX, GH, RH, CFG, W_IH_SCALE,
 W_HH_SCALE, ACC, W_HH_PACKED, W_IH_PACKED) = range(3, 20)


def spec(a: dict) -> Signature:
    i, h = integer(a, "input_size"), integer(a, "hidden_size")
    boolean(a, "linear_before_reset", True)
    check_options(a, 2)
    return Signature([i], h, {"W_ih": ((i, 3 * h), True), "W_hh": ((h, 3 * h), True),
                              "b_ih": ((3 * h,), False), "b_hh": ((3 * h,), False),
                              "h0": ((h,), False)},
                     state={"h": (h, "h0")})


def emit(em, node, ins: list[int], out: int, state: dict) -> None:
    a = node.attrs
    H = a["hidden_size"]
    em.add_row(new_row(OPCODE, {
        IN: ins[0], OUT: out, IN_SIZE: a["input_size"], HIDDEN: H,
        LBR: int(a.get("linear_before_reset", True)), W_IH: em.weight(node, "W_ih"),
        W_HH: em.weight(node, "W_hh"), B_IH: em.weight(node, "b_ih"), B_HH: em.weight(node, "b_hh"),
        STATE_H: state["h"], GX: em.alloc(3 * H), GH: em.alloc(3 * H), RH: em.alloc(H),
        CFG: em.cell_config(node), W_IH_SCALE: em.scale(node, "W_ih"),
        W_HH_SCALE: em.scale(node, "W_hh"),
        ACC: em.alloc(scratch_floats(node, 3 * H, a["input_size"], H)),
        W_HH_PACKED: packed_copy(em, node, "W_hh") if a.get("linear_before_reset", True) else -1,
        W_IH_PACKED: input_packed_copy(em, node)}))


@njit(inline="always", **KERNEL)
def _cell(gx, gh, h, H):
    """The default reset-after cell, shared by gru_pointwise and step_streams (inlined there:
    same floats)."""
    xr, xz, xn = gx[0:H], gx[H:2 * H], gx[2 * H:3 * H]
    hr, hz, hn = gh[0:H], gh[H:2 * H], gh[2 * H:3 * H]
    one = np.float32(1.0)
    for j in range(H):
        z = fast_sigmoid(xz[j] + hz[j])
        n = fast_tanh(xn[j] + fast_sigmoid(xr[j] + hr[j]) * hn[j])
        h[j] = (one - z) * n + z * h[j]


@njit(**BORROWING)
def gru_pointwise(gx, gh, h, H, lbr, cfg):
    """PyTorch gate order r, z, n; gx = x W_ih + b_ih, gh = h W_hh + b_hh.

    For the reset-before form (lbr == 0) gh[2H:3H] must already hold (r*h) W_hn + b_hn,
    which the caller computes after r is known; see gru_step.
    """
    if cfg[0] != 0:
        clip = cfg[1]
        fk, fa, fb = int(cfg[4]), cfg[5], cfg[6]
        gk, ga, gb = int(cfg[7]), cfg[8], cfg[9]
        for j in range(H):
            z = gate_act(clipv(gx[H + j] + gh[H + j], clip), fk, fa, fb)
            if lbr:
                r = gate_act(clipv(gx[j] + gh[j], clip), fk, fa, fb)
                n = gate_act(clipv(gx[2 * H + j] + r * gh[2 * H + j], clip), gk, ga, gb)
            else:
                n = gate_act(clipv(gx[2 * H + j] + gh[2 * H + j], clip), gk, ga, gb)
            h[j] = (np.float32(1.0) - z) * n + z * h[j]
        return
    if lbr:
        _cell(gx, gh, h, H)
        return
    xz, xn = gx[H:2 * H], gx[2 * H:3 * H]
    hz, hn = gh[H:2 * H], gh[2 * H:3 * H]
    one = np.float32(1.0)
    for j in range(H):
        z = fast_sigmoid(xz[j] + hz[j])
        n = fast_tanh(xn[j] + hn[j])
        h[j] = (one - z) * n + z * h[j]


@njit(**BORROWING)
def gru_step(gx, gh, rh, h, H, w, whh_off, bhh_off, lbr, cfg, whh_s, acc, whh_p):
    """One GRU update of h in place, given gx = x W_ih + b_ih (3H). gh, rh are scratch (3H, H).
    whh_p >= 0: W_hh packed (linalg.pack_panels) at w[whh_p:], read instead of w[whh_off:]."""
    if lbr:
        set_bias(gh, w, bhh_off, 3 * H)
        if whh_p >= 0:
            matvec_packed(gh, h, w, whh_p, H, 3 * H)
        else:
            mv(gh, h, w, whh_off, whh_s, H, 3 * H, np.int64(0), 3 * H, acc)
    else:
        # r and z need h W_h{r,z}; n needs (r*h) W_hn, so compute the first 2H columns,
        # then r, then the last H columns from r*h. W_hh rows are (H, 3H).
        set_bias(gh, w, bhh_off, 3 * H)
        mv(gh[0:2 * H], h, w, whh_off, whh_s, H, 3 * H, np.int64(0), 2 * H, acc)
        general = cfg[0] != 0
        for k in range(H):
            if general:
                r = gate_act(clipv(gx[k] + gh[k], cfg[1]), int(cfg[4]), cfg[5], cfg[6])
            else:
                r = fast_sigmoid(gx[k] + gh[k])
            rh[k] = r * h[k]
        mv(gh[2 * H:3 * H], rh, w, whh_off, whh_s, H, 3 * H, 2 * H, H, acc)
    gru_pointwise(gx, gh, h, H, lbr, cfg)


@njit(inline="always", **KERNEL)
def step(prog, r, w, st, sc):
    """One step of one stream: gx = x W_ih + b_ih, then gru_step updates h in place."""
    i0 = prog[r, IN]
    o0 = prog[r, OUT]
    I = prog[r, IN_SIZE]
    H = prog[r, HIDDEN]
    gx = sc[prog[r, GX]:prog[r, GX] + 3 * H]
    gh = sc[prog[r, GH]:prog[r, GH] + 3 * H]
    rh = sc[prog[r, RH]:prog[r, RH] + H]
    h = st[prog[r, STATE_H]:prog[r, STATE_H] + H]
    cfg = w[prog[r, CFG]:prog[r, CFG] + CFG_SIZE]
    acc = sc[prog[r, ACC]:prog[r, ACC] + 3 * H]
    set_bias(gx, w, prog[r, B_IH], 3 * H)
    mv(gx, sc[i0:i0 + I], w, prog[r, W_IH], prog[r, W_IH_SCALE], I, 3 * H, np.int64(0), 3 * H, acc)
    gru_step(gx, gh, rh, h, H, w, prog[r, W_HH], prog[r, B_HH], prog[r, LBR], cfg,
             prog[r, W_HH_SCALE], acc, prog[r, W_HH_PACKED])
    out = sc[o0:o0 + H]
    for j in range(H):
        out[j] = h[j]


@njit(inline="always", **KERNEL)
def step_streams(prog, r, w, mem, S, tmp):
    """All streams at once for the reset-after form with float weights (matmat_acc,
    bit-identical per stream); returns False (not handled) otherwise.

    The gate sums gx, gh of stream b go to row b of `tmp` (the first block's rows,
    interpreter.step_streams), not to the stream's own scratch: GX and GH are 1.5 KB a
    stream at H=64, and 4096 streams' copies, dirtied every step, no longer fit in L2:
    2.70 -> 2.00 ms for this op over 4096 streams of GRU(16,64) (harness, thread time). The
    bias copies, the cell and the output copy are inlined: 3.35 -> 2.70 ms there (the cell as
    a call per stream: +0.17 ms; its floats are gru_pointwise's, the same _cell). The whole
    step with a Linear(64, 16) head: 4.13 -> 2.53 ms (torch GRUCell + Linear 2.7-3.2 ms)."""
    if not prog[r, LBR] or prog[r, W_IH_SCALE] >= 0 or prog[r, W_HH_SCALE] >= 0:
        return False
    n = mem.shape[0]
    i0 = S + prog[r, IN]
    o0 = S + prog[r, OUT]
    I = prog[r, IN_SIZE]
    H = prog[r, HIDDEN]
    G = 3 * H
    gx0 = S + prog[r, GX]
    gh0 = S + prog[r, GH]
    h0 = prog[r, STATE_H]
    cfg = w[prog[r, CFG]:prog[r, CFG] + CFG_SIZE]
    bi = prog[r, B_IH]
    bh = prog[r, B_HH]
    for b in range(n):
        fill_bias(tmp[b, gx0:gx0 + G], w, bi, G)
        fill_bias(tmp[b, gh0:gh0 + G], w, bh, G)
    p_ih = for_matmat_packed(prog[r, W_IH_PACKED], I)
    matmat_w_hh(tmp, gx0, mem, i0, w, prog[r, W_IH], p_ih, I, G)
    matmat_w_hh(tmp, gh0, mem, h0, w, prog[r, W_HH], prog[r, W_HH_PACKED], H, G)
    default = cfg[0] == 0
    for b in range(n):
        t = tmp[b]
        h = mem[b, h0:h0 + H]
        if default:
            _cell(t[gx0:gx0 + G], t[gh0:gh0 + G], h, H)
        else:
            gru_pointwise(t[gx0:gx0 + G], t[gh0:gh0 + G], h, H, prog[r, LBR], cfg)
        out = mem[b, o0:o0 + H]
        for j in range(H):
            out[j] = h[j]
    return True


@njit(**KERNEL)
def gru_sequence(gx, w, whh_off, bhh_off, whh_p, hs, lbr, reverse, lengths, cfg, out):
    """gx (T, B, 3H) = x W_ih + b_ih; W_hh (H, 3H) at w[whh_off:] (packed at w[whh_p:] when
    whh_p >= 0), b_hh at w[bhh_off:] (-1: none), as the step kernel reads them; hs (B, H) the
    state each sequence starts from, updated in place to its state after its last step."""
    T, B, G = gx.shape
    H = G // 3
    g = np.empty(G, np.float32)
    gh = np.empty(G, np.float32)
    rh = np.empty(H, np.float32)
    acc = np.empty(G, np.float32)
    if B > 1 and lbr and full_length(lengths, T):
        ghb = np.empty((B, G), np.float32)
        for s in range(T):
            t = T - 1 - s if reverse else s
            for b in range(B):
                set_bias(ghb[b], w, bhh_off, G)
            matmat_w_hh(ghb, np.int64(0), hs, np.int64(0), w, whh_off, whh_p, H, G)
            for b in range(B):
                gru_pointwise(gx[t, b], ghb[b], hs[b], H, lbr, cfg)
            out[t] = hs
        return
    for b in range(B):
        h = hs[b]
        L = lengths[b]
        for s in range(L):
            t = L - 1 - s if reverse else s
            for j in range(G):
                g[j] = gx[t, b, j]
            if lbr and whh_p >= 0:  # gru_step's floats, W_hh's panels in alternating order
                set_bias(gh, w, bhh_off, G)
                matvec_packed_snake(gh, h, w, whh_p, H, G, s % 2 == 1)
                gru_pointwise(g, gh, h, H, lbr, cfg)
            else:
                gru_step(g, gh, rh, h, H, w, whh_off, bhh_off, lbr, cfg, np.int64(-1), acc, whh_p)
            for j in range(H):
                out[t, b, j] = h[j]


@njit(**KERNEL)
def gru_batch(x, b_ih, b_hh, arena, p_ih, p_hh, hs, reverse, cfg, out):
    """A batch of full-length sequences of the reset-after form, x (T, B, I), with W_ih and
    W_hh packed at arena[p_ih:], arena[p_hh:] (AVX-512): each step's gx = b_ih + x[t] W_ih and
    gh = b_hh + h W_hh as matmat_fma2 passes (one FMA chain per gate, as lstm_batch) instead
    of the projection of all steps (a (T, B, 3H) array written, then read back) and
    matmat_packed's four-term partial sums. run() of GRU+Linear B=32, ns per sequence-step
    (thread time, A/B interleaved in one process, AVX-512): (16,64) 572 -> 550, (64,128)
    2020 -> 1839, (128,256) 7175 -> 6330, (256,512) 25067 -> 23100. Within 1e-5 of lone
    sequences, not bit-identical (tests/test_batch_fma.py). hs (B, H): the state each
    sequence starts from, updated in place; out (T, B, H)."""
    T, B, I = x.shape
    G = b_ih.shape[0]
    H = G // 3
    gxb = np.empty((B, G), np.float32)
    ghb = np.empty((B, G), np.float32)
    nothing = np.int64(0)
    for s in range(T):
        t = T - 1 - s if reverse else s
        xt = x[t]
        matmat_fma2(gxb, b_ih, xt, arena, p_ih, I, xt, p_ih, nothing, G)
        matmat_fma2(ghb, b_hh, hs, arena, p_hh, H, hs, p_hh, nothing, G)
        for b in range(B):
            gru_pointwise(gxb[b], ghb[b], hs[b], H, np.int64(1), cfg)
        out[t] = hs


def run_sequence(plan, node, ins: list[np.ndarray], lengths: np.ndarray,
                 state: dict) -> np.ndarray:
    """Whole sequences: one input projection for all steps, then the recurrence, from
    `state` (slot -> (B, size), model.initial_state), updated in place. The recurrence
    reads W_hh and b_hh from the plan's arena, where the step program reads them."""
    a, w = node.attrs, node.weights
    x = ins[0]
    T, B, _ = x.shape
    H = a["hidden_size"]
    row = plan.prog[plan.node_rows[node.name]]
    lbr = int(a.get("linear_before_reset", True))
    if (B > 1 and lbr and 3 * H >= PANEL and row[W_IH_PACKED] >= 0 and row[W_HH_PACKED] >= 0
            and bool((lengths == T).all())):
        out = np.empty((T, B, H), np.float32)  # every step written
        b_ih, b_hh = (np.zeros(3 * H, np.float32) if w.get(k) is None else w[k] for k in ("b_ih", "b_hh"))
        gru_batch(np.ascontiguousarray(x), b_ih, b_hh, plan.arena,
                  row[W_IH_PACKED], row[W_HH_PACKED], state["h"], bool(a.get("reverse")),
                  plan.cfg[node.name], out)
        return out
    out = np.zeros((T, B, H), np.float32)
    # one sequence (and Stream.step_many's chunks): seq_panels; a batch: the W_IH_PACKED copy
    # from PACKED_MIN_ROWS inputs
    panels = (seq_panels(plan, node, "W_ih", x) if B == 1
              else arena_panels(plan, for_matmat_packed(row[W_IH_PACKED], a["input_size"]),
                                w["W_ih"]))
    gx = project(x, w["W_ih"], w.get("b_ih"), panels)
    gru_sequence(gx, plan.arena, row[W_HH], row[B_HH], row[W_HH_PACKED], state["h"], lbr,
                 bool(a.get("reverse")), lengths, plan.cfg[node.name], out)
    return out


def describe(node, out_size: int) -> str:
    a = node.attrs
    return f"GRU {a['input_size']}->{a['hidden_size']}" + (
        "" if a.get("linear_before_reset", True) else " (reset before)")


OPS = (OpDef("GRU", spec, emit, recurrent=True, matrix_roles=("W_ih", "W_hh"),
             run_sequence=run_sequence, describe=describe),)
