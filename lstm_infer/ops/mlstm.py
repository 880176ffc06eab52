"""MLSTM: the mLSTM layer of xLSTM (the `xlstm` package's mLSTMLayer), one step at a time.

Per step, with d = `size`, I = `inner`, NH = `heads`, DH = I/NH, K = `kernel`:
  [xm, z] = x W_up + b_up                          (2I)
  xc = silu(causal depthwise conv1d_K(xm))         (state `conv`: the K-1 previous xm)
  q, k = headwise(xc), v = headwise(xm)            (blocks of `block` features, W_qkv)
  [i, f] = [q, k, v] W_if + b_if                   (NH input / forget pre-activations)
  per head: m' = max(logsigmoid(f) + m, i); fa = e^(logsigmoid(f) + m - m'); ia = e^(i - m')
            C = fa C + ia (k/sqrt(DH)) v^T;  n = fa n + ia k/sqrt(DH)
            h = (q^T C) / (max(|q.n|, e^-m') + 1e-6)        (states C (DH, DH), n, m)
  h = head_norm(h) * norm_w;  y = ((h + skip * xc) * silu(z)) W_down + b_down
which is the package's `mLSTMLayer.step` (recurrent_step_stabilized_simple) and, from zero
state, its parallel forward. The program uses two rows: the op's row and, after it, a row
with opcode 0 (nothing to dispatch) holding the state and scratch offsets, as 18 weight
and size fields fill the first.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..kernels import KERNEL
from ..kernels.linalg import matvec_f32, set_bias
from ..kernels.xlstm_parts import conv_silu, head_norm, headwise, logsigmoid, silu
from .base import IN, OUT, OpDef, Signature, SpecError, integer, new_row, number, size

OPCODE = 41
SIZE, INNER, HEADS, BLOCK, KSIZE, W_UP, B_UP, CONV_W, CONV_B, W_QKV, B_QKV, W_IF, B_IF, \
    NORM_W, SKIP, W_DOWN, B_DOWN = range(3, 20)
# fields of the second row (opcode 0): state slots, scratch, [norm eps, cell eps] offset
PAST, CMEM, NMEM, MMEM, SCR, EPS = range(1, 7)


def spec(a: dict) -> Signature:
    d, inner, nh = integer(a, "size"), integer(a, "inner"), integer(a, "heads")
    bs, k = integer(a, "block"), integer(a, "kernel", hi=64)
    if inner % nh or inner % bs:
        raise SpecError(f"heads {nh} and block {bs} must divide inner {inner}")
    if number(a, "eps", 1e-5) <= 0:
        raise SpecError("attribute 'eps' must be positive")
    dh = inner // nh
    weights = {"W_up": ((d, 2 * inner), True), "b_up": ((2 * inner,), False),
               "conv_w": ((k, inner), True), "conv_b": ((inner,), False),
               "W_qkv": ((3, inner // bs, bs, bs), True), "b_qkv": ((3 * inner,), False),
               "W_if": ((3 * inner, 2 * nh), True), "b_if": ((2 * nh,), True),
               "norm_w": ((inner,), False), "skip": ((inner,), True),
               "W_down": ((inner, d), True), "b_down": ((d,), False)}
    state = {"C": (size(nh * dh * dh), None), "n": (inner, None), "m": (nh, None)}
    if k > 1:
        state["conv"] = (size((k - 1) * inner), None)
    return Signature([d], d, weights, state)


def emit(em, node, ins: list[int], out: int, state: dict) -> None:
    a = node.attrs
    inner, nh = a["inner"], a["heads"]
    em.add_row(new_row(OPCODE, {
        IN: ins[0], OUT: out, SIZE: a["size"], INNER: inner, HEADS: nh, BLOCK: a["block"],
        KSIZE: a["kernel"], **{f: em.weight(node, role) for f, role in (
            (W_UP, "W_up"), (B_UP, "b_up"), (CONV_W, "conv_w"), (CONV_B, "conv_b"),
            (W_QKV, "W_qkv"), (B_QKV, "b_qkv"), (W_IF, "W_if"), (B_IF, "b_if"),
            (NORM_W, "norm_w"), (SKIP, "skip"), (W_DOWN, "W_down"), (B_DOWN, "b_down"))}}))
    em.add_row(new_row(0, {PAST: state.get("conv", -1), CMEM: state["C"], NMEM: state["n"],
                           MMEM: state["m"], SCR: em.alloc(7 * inner + 2 * nh),
                           EPS: em.const(a.get("eps", 1e-5), 1e-6)}))


@njit(**KERNEL)
def step(prog, r, w, st, sc):
    D = prog[r, SIZE]
    I = prog[r, INNER]
    NH = prog[r, HEADS]
    BS = prog[r, BLOCK]
    K = prog[r, KSIZE]
    s0 = prog[r + 1, SCR]
    up = sc[s0:s0 + 2 * I]                 # [xm, z]
    qkv = sc[s0 + 2 * I:s0 + 5 * I]        # the gates read q, k, v side by side
    xc = sc[s0 + 5 * I:s0 + 6 * I]
    h = sc[s0 + 6 * I:s0 + 7 * I]
    gates = sc[s0 + 7 * I:s0 + 7 * I + 2 * NH]
    x = sc[prog[r, IN]:prog[r, IN] + D]
    set_bias(up, w, prog[r, B_UP], 2 * I)
    matvec_f32(up, x, w, prog[r, W_UP], D, 2 * I, np.int64(0), 2 * I)
    xm = up[:I]
    p0 = prog[r + 1, PAST]
    past = st[p0:p0 + (K - 1) * I] if p0 >= 0 else st[0:0]
    conv_silu(xm, xc, past, w, prog[r, CONV_W], prog[r, CONV_B], K, I, True)
    G = I // BS
    wq = prog[r, W_QKV]
    bq = prog[r, B_QKV]
    for t in range(3):
        headwise(xm if t == 2 else xc, qkv[t * I:(t + 1) * I], w, wq + t * I * BS,
                 bq + t * I if bq >= 0 else -1, G, BS)
    set_bias(gates, w, prog[r, B_IF], 2 * NH)
    matvec_f32(gates, qkv, w, prog[r, W_IF], 3 * I, 2 * NH, np.int64(0), 2 * NH)
    e0 = prog[r + 1, EPS]
    _cell(qkv, gates, h, st, prog[r + 1, CMEM], prog[r + 1, NMEM], prog[r + 1, MMEM], I, NH,
          w[e0 + 1])
    head_norm(h, h, NH, I // NH, w[e0], w, prog[r, NORM_W])
    sk = w[prog[r, SKIP]:prog[r, SKIP] + I]
    z = up[I:]
    for j in range(I):
        h[j] = (h[j] + sk[j] * xc[j]) * silu(z[j])
    out = sc[prog[r, OUT]:prog[r, OUT] + D]
    set_bias(out, w, prog[r, B_DOWN], D)
    matvec_f32(out, h, w, prog[r, W_DOWN], I, D, np.int64(0), D)


@njit(**KERNEL)
def _cell(qkv, gates, h, st, c0, n0, m0, I, NH, eps):
    """The matrix-memory update and read-out of every head (recurrent_step_stabilized_simple)."""
    DH = I // NH
    sqrt_dh = np.float32(math.sqrt(DH))
    for hh in range(NH):
        logf = logsigmoid(gates[NH + hh])
        ig = gates[hh]
        m_old = st[m0 + hh]
        mn = max(logf + m_old, ig)
        fa = np.float32(math.exp(logf + m_old - mn))
        ia = np.float32(math.exp(ig - mn))
        q = qkv[hh * DH:(hh + 1) * DH]
        k = qkv[I + hh * DH:I + (hh + 1) * DH]
        v = qkv[2 * I + hh * DH:2 * I + (hh + 1) * DH]
        n = st[n0 + hh * DH:n0 + (hh + 1) * DH]
        hv = h[hh * DH:(hh + 1) * DH]
        for j in range(DH):
            hv[j] = np.float32(0.0)
        qn = np.float32(0.0)
        cb = c0 + hh * DH * DH
        for i in range(DH):
            ks = k[i] / sqrt_dh
            a = ia * ks
            qi = q[i]
            row = st[cb + i * DH:cb + (i + 1) * DH]
            for j in range(DH):
                c = fa * row[j] + a * v[j]
                row[j] = c
                hv[j] += qi * c
            n[i] = fa * n[i] + a
            qn += qi * n[i]
        den = max(abs(qn), np.float32(math.exp(-mn))) + eps
        for j in range(DH):
            hv[j] = hv[j] / den
        st[m0 + hh] = mn


def describe(node, out_size: int) -> str:
    a = node.attrs
    return (f"MLSTM {a['size']} (inner {a['inner']}, {a['heads']} heads, conv {a['kernel']}, "
            f"qkv blocks of {a['block']})")


def example(rng) -> tuple[dict, dict]:
    d, inner, nh, bs, k = 4, 8, 2, 4, 3
    r = lambda *s: rng.standard_normal(s).astype(np.float32) * 0.5  # noqa: E731
    return ({"size": d, "inner": inner, "heads": nh, "block": bs, "kernel": k},
            {"W_up": r(d, 2 * inner), "conv_w": r(k, inner), "conv_b": r(inner),
             "W_qkv": r(3, inner // bs, bs, bs), "W_if": r(3 * inner, 2 * nh), "b_if": r(2 * nh),
             "norm_w": r(inner) + 1, "skip": r(inner), "W_down": r(inner, d)})


OPS = (OpDef("MLSTM", spec, emit, recurrent=True, describe=describe, example=example),)
