"""SLSTM: the sLSTM layer of xLSTM (the `xlstm` package's sLSTMLayer, vanilla backend),
one step at a time.

Per step, with d = `size`, NH = `heads`, DH = d/NH, K = `kernel` (0: no conv):
  xc = silu(causal depthwise conv1d_K(x))   (x itself when K = 0; state `conv`: K-1 inputs)
  raw[g] = headwise_g(xc for g in i,f; x for g in z,o) + b[g] + y_{t-1} R[g]   (g = i,f,z,o)
  logfm = m + logsigmoid(f);  m' = i if n == 0 (the whole row: a fresh state) else max(i, logfm)
  ig = min(e^(i - m'), 1);  fg = min(e^(logfm - m'), 1)
  c = fg c + ig tanh(z);  n = fg n + ig;  y = sigmoid(o) c / n    (states y, c, n, m)
  out = head_norm(y) * norm_w
which is slstm_forward_pointwise of the package's vanilla backend. R is block-diagonal per
head. The package tests `n == 0` over its whole (batch, hidden) state tensor; here each
stream tests its own row, which is the same for a batch started together.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..kernels import KERNEL
from ..kernels.xlstm_parts import conv_silu, head_norm, headwise, logsigmoid
from .base import IN, OUT, OpDef, Signature, SpecError, integer, new_row, number, size

OPCODE = 42
SIZE, HEADS, KSIZE, CONV_W, CONV_B, W_X, R_W, BIAS, NORM_W, EPS, PAST, Y, C, N, M, SCR = \
    range(3, 19)


def spec(a: dict) -> Signature:
    d, nh = integer(a, "size"), integer(a, "heads")
    k = integer(a, "kernel", lo=0, hi=64)
    if d % nh:
        raise SpecError(f"heads {nh} must divide size {d}")
    if number(a, "eps", 1e-5) <= 0:
        raise SpecError("attribute 'eps' must be positive")
    dh = d // nh
    weights = {"W_x": ((4, nh, dh, dh), True), "R": ((nh, dh, 4 * dh), True),
               "bias": ((4 * d,), True), "norm_w": ((d,), False)}
    if k:
        weights.update({"conv_w": ((k, d), True), "conv_b": ((d,), False)})
    state = {"y": (d, None), "c": (d, None), "n": (d, None), "m": (d, None)}
    if k > 1:
        state["conv"] = (size((k - 1) * d), None)
    return Signature([d], d, weights, state)


def emit(em, node, ins: list[int], out: int, state: dict) -> None:
    a = node.attrs
    d, nh = a["size"], a["heads"]
    em.add_row(new_row(OPCODE, {
        IN: ins[0], OUT: out, SIZE: d, HEADS: nh, KSIZE: a["kernel"],
        CONV_W: em.weight(node, "conv_w"), CONV_B: em.weight(node, "conv_b"),
        W_X: em.weight(node, "W_x"), R_W: em.weight(node, "R"), BIAS: em.weight(node, "bias"),
        NORM_W: em.weight(node, "norm_w"), EPS: em.const(a.get("eps", 1e-5)),
        PAST: state.get("conv", -1), Y: state["y"], C: state["c"], N: state["n"],
        M: state["m"], SCR: em.alloc(5 * d + 4 * d // nh)}))


@njit(**KERNEL)
def step(prog, r, w, st, sc):
    D = prog[r, SIZE]
    NH = prog[r, HEADS]
    K = prog[r, KSIZE]
    DH = D // NH
    s0 = prog[r, SCR]
    xc = sc[s0:s0 + D]
    raw = sc[s0 + D:s0 + 5 * D]
    acc = sc[s0 + 5 * D:s0 + 5 * D + 4 * DH]
    x = sc[prog[r, IN]:prog[r, IN] + D]
    if K > 0:
        p0 = prog[r, PAST]
        past = st[p0:p0 + (K - 1) * D] if p0 >= 0 else st[0:0]
        conv_silu(x, xc, past, w, prog[r, CONV_W], prog[r, CONV_B], K, D, True)
    else:
        for j in range(D):
            xc[j] = x[j]
    for g in range(4):
        headwise(xc if g < 2 else x, raw[g * D:(g + 1) * D], w, prog[r, W_X] + g * D * DH,
                 prog[r, BIAS] + g * D, NH, DH)
    y = st[prog[r, Y]:prog[r, Y] + D]
    r0 = prog[r, R_W]
    for hh in range(NH):  # R block of head hh: (DH, 4 DH), its rows read by y of that head
        for j in range(4 * DH):
            acc[j] = np.float32(0.0)
        for k in range(DH):
            yk = y[hh * DH + k]
            row = w[r0 + (hh * DH + k) * 4 * DH:r0 + (hh * DH + k + 1) * 4 * DH]
            for j in range(4 * DH):
                acc[j] += yk * row[j]
        for g in range(4):
            dst = raw[g * D + hh * DH:g * D + (hh + 1) * DH]
            src = acc[g * DH:(g + 1) * DH]
            for j in range(DH):
                dst[j] += src[j]
    _pointwise(raw, st, prog[r, Y], prog[r, C], prog[r, N], prog[r, M], D)
    out = sc[prog[r, OUT]:prog[r, OUT] + D]
    head_norm(y, out, NH, DH, w[prog[r, EPS]], w, prog[r, NORM_W])


@njit(**KERNEL)
def _pointwise(raw, st, y0, c0, n0, m0, D):
    """slstm_forward_pointwise: exponential gating with the stabiliser m."""
    y = st[y0:y0 + D]
    c = st[c0:c0 + D]
    n = st[n0:n0 + D]
    m = st[m0:m0 + D]
    fresh = True
    for j in range(D):
        if n[j] != 0.0:
            fresh = False
    one = np.float32(1.0)
    for j in range(D):
        iraw = raw[j]
        logfm = m[j] + logsigmoid(raw[D + j])
        mn = iraw if fresh else max(iraw, logfm)
        og = one / (one + np.float32(math.exp(-raw[3 * D + j])))
        ig = min(np.float32(math.exp(iraw - mn)), one)
        fg = min(np.float32(math.exp(logfm - mn)), one)
        cn = fg * c[j] + ig * np.float32(math.tanh(raw[2 * D + j]))
        nn = fg * n[j] + ig
        c[j] = cn
        n[j] = nn
        m[j] = mn
        y[j] = og * cn / nn


def describe(node, out_size: int) -> str:
    a = node.attrs
    return f"SLSTM {a['size']} ({a['heads']} heads, conv {a['kernel']})"


def example(rng) -> tuple[dict, dict]:
    d, nh, k = 4, 2, 3
    r = lambda *s: rng.standard_normal(s).astype(np.float32) * 0.5  # noqa: E731
    return ({"size": d, "heads": nh, "kernel": k},
            {"W_x": r(4, nh, d // nh, d // nh), "R": r(nh, d // nh, 4 * d // nh),
             "bias": r(4 * d), "norm_w": r(d) + 1, "conv_w": r(k, d)})


OPS = (OpDef("SLSTM", spec, emit, recurrent=True, describe=describe, example=example),)
