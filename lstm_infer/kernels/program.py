"""The per-step interpreter: one compiled call runs the whole model for n streams.

A model is compiled (by lstm_infer.plan) into a small int64 program, one row of
PROG_WIDTH fields per op, plus three float32 arenas: weights `w` (1-D, read-only),
`state` (n, S) recurrent state and `scratch` (n, K) activations. Offsets in the
program are into those arenas. Because every model uses the same kernel signature,
the kernels compile once per installation, not once per model.

Row layouts (field 0 is the opcode; -1 marks an absent weight):
  LINEAR  in, out, I, O, W, b
  LSTM    in, out, I, H, P, W_ih, W_hh, bias, W_hr, st_h, st_c, gates, hfull
  GRU     in, out, I, H, lbr, W_ih, W_hh, b_ih, b_hh, st_h, gx, gh, rh
  RNN     in, out, I, H, relu, W_ih, W_hh, bias, st_h
  ACT     in, out, F, kind, alpha (index into w)
  LNORM   in, out, F, eps (index into w), weight, bias
  COPY    in, out, F                     (Concat is one COPY per input)
  ADD/MUL a, out, F, b
The first row is a header: n_ops, input offset, input size, output offset, output size.
"""
import math

import numpy as np
from numba import njit

from .cells import activation, gru_step, layernorm, lstm_pointwise, matvec_acc, set_bias

PROG_WIDTH = 16
OP_LINEAR, OP_LSTM, OP_GRU, OP_RNN, OP_ACT, OP_LNORM, OP_COPY, OP_ADD, OP_MUL = range(1, 10)


@njit(cache=True)
def _run_ops(prog, w, st, sc):
    """Run every op once for one stream: st, sc are that stream's state and scratch rows."""
    n_ops = prog[0, 0]
    for r in range(1, n_ops + 1):
        op = prog[r, 0]
        i0 = prog[r, 1]
        o0 = prog[r, 2]
        if op == OP_LINEAR:
            I = prog[r, 3]
            O = prog[r, 4]
            out = sc[o0:o0 + O]
            set_bias(out, w, prog[r, 6], O)
            matvec_acc(out, sc[i0:i0 + I], w, prog[r, 5], I, O)
        elif op == OP_LSTM:
            I = prog[r, 3]
            H = prog[r, 4]
            P = prog[r, 5]
            R = P if P > 0 else H
            g0 = prog[r, 12]
            gates = sc[g0:g0 + 4 * H]
            h = st[prog[r, 10]:prog[r, 10] + R]
            c = st[prog[r, 11]:prog[r, 11] + H]
            set_bias(gates, w, prog[r, 8], 4 * H)
            matvec_acc(gates, sc[i0:i0 + I], w, prog[r, 6], I, 4 * H)
            matvec_acc(gates, h, w, prog[r, 7], R, 4 * H)
            if P > 0:
                hf0 = prog[r, 13]
                hfull = sc[hf0:hf0 + H]
                lstm_pointwise(gates, c, hfull, H)
                set_bias(h, w, -1, P)
                matvec_acc(h, hfull, w, prog[r, 9], H, P)
            else:
                lstm_pointwise(gates, c, h, H)
            out = sc[o0:o0 + R]
            for j in range(R):
                out[j] = h[j]
        elif op == OP_GRU:
            I = prog[r, 3]
            H = prog[r, 4]
            gx = sc[prog[r, 11]:prog[r, 11] + 3 * H]
            gh = sc[prog[r, 12]:prog[r, 12] + 3 * H]
            rh = sc[prog[r, 13]:prog[r, 13] + H]
            h = st[prog[r, 10]:prog[r, 10] + H]
            set_bias(gx, w, prog[r, 8], 3 * H)
            matvec_acc(gx, sc[i0:i0 + I], w, prog[r, 6], I, 3 * H)
            gru_step(gx, gh, rh, h, H, w, prog[r, 7], prog[r, 9], prog[r, 5])
            out = sc[o0:o0 + H]
            for j in range(H):
                out[j] = h[j]
        elif op == OP_RNN:
            I = prog[r, 3]
            H = prog[r, 4]
            relu = prog[r, 5]
            h = st[prog[r, 9]:prog[r, 9] + H]
            out = sc[o0:o0 + H]
            set_bias(out, w, prog[r, 8], H)
            matvec_acc(out, sc[i0:i0 + I], w, prog[r, 6], I, H)
            matvec_acc(out, h, w, prog[r, 7], H, H)
            for j in range(H):
                v = out[j]
                if relu:
                    v = v if v > 0 else np.float32(0.0)
                else:
                    v = math.tanh(v)
                out[j] = v
                h[j] = v
        elif op == OP_ACT:
            F = prog[r, 3]
            activation(sc[i0:i0 + F], sc[o0:o0 + F], F, prog[r, 4], w[prog[r, 5]])
        elif op == OP_LNORM:
            F = prog[r, 3]
            layernorm(sc[i0:i0 + F], sc[o0:o0 + F], F, w[prog[r, 4]], w, prog[r, 5], prog[r, 6])
        elif op == OP_COPY:
            F = prog[r, 3]
            for j in range(F):
                sc[o0 + j] = sc[i0 + j]
        elif op == OP_ADD:
            F = prog[r, 3]
            b0 = prog[r, 4]
            for j in range(F):
                sc[o0 + j] = sc[i0 + j] + sc[b0 + j]
        elif op == OP_MUL:
            F = prog[r, 3]
            b0 = prog[r, 4]
            for j in range(F):
                sc[o0 + j] = sc[i0 + j] * sc[b0 + j]


@njit(cache=True)
def _all_finite(x):
    for v in x.ravel():
        if not math.isfinite(v):
            return False
    return True


@njit(cache=True)
def step_streams(prog, w, state, scratch, x, y, check_finite):
    """One step for n streams: x (n, I) -> y (n, O). Returns 1 (state untouched) on NaN/Inf input."""
    if check_finite and not _all_finite(x):
        return 1
    in0 = prog[0, 1]
    I = prog[0, 2]
    out0 = prog[0, 3]
    O = prog[0, 4]
    for b in range(x.shape[0]):
        sc = scratch[b]
        for j in range(I):
            sc[in0 + j] = x[b, j]
        _run_ops(prog, w, state[b], sc)
        for j in range(O):
            y[b, j] = sc[out0 + j]
    return 0


@njit(cache=True)
def step_sequence(prog, w, state, scratch, xs, ys, check_finite):
    """T steps of one stream: xs (T, I) -> ys (T, O); same arithmetic as T step_streams calls."""
    if check_finite and not _all_finite(xs):
        return 1
    in0 = prog[0, 1]
    I = prog[0, 2]
    out0 = prog[0, 3]
    O = prog[0, 4]
    sc = scratch[0]
    st = state[0]
    for t in range(xs.shape[0]):
        for j in range(I):
            sc[in0 + j] = xs[t, j]
        _run_ops(prog, w, st, sc)
        for j in range(O):
            ys[t, j] = sc[out0 + j]
    return 0
