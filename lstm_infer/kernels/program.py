"""The per-step interpreter: one compiled call runs the whole model for n streams.

A model is compiled (by lstm_infer.plan) into a small int64 program, one row of
PROG_WIDTH fields per op, plus three float32 arenas: weights `w` (1-D, read-only),
`state` (n, S) recurrent state and `scratch` (n, K) activations. Offsets in the
program are into those arenas. Because every model uses the same kernel signature,
the kernels compile once per installation, not once per model.

Row layouts (field 0 is the opcode; -1 marks an absent weight; `cfg` is the offset
of a CFG_SIZE recurrent config block in w, see cells.py). A matrix field M is a float
offset into w when its scale field M_s is -1; otherwise M is a *byte* offset of an int8
matrix packed into w (read through w.view(int8)) and M_s the offset of its per-column
float32 scales; `acc` is scratch for the int8 accumulators:
  LINEAR  in, out, I, O, W, b, W_s, acc
  LSTM    in, out, I, H, P, W_ih, W_hh, bias, W_hr, st_h, st_c, gates, hfull, cfg, peephole,
          W_ih_s, W_hh_s, W_hr_s, acc, output_cell (out = [h, c] when 1)
  GRU     in, out, I, H, lbr, W_ih, W_hh, b_ih, b_hh, st_h, gx, gh, rh, cfg, W_ih_s, W_hh_s, acc
  RNN     in, out, I, H, -, W_ih, W_hh, bias, st_h, cfg, W_ih_s, W_hh_s, acc
  ACT     in, out, F, kind, alpha (alpha at w[i], beta at w[i+1]), group
  LNORM   in, out, size, eps (index into w), weight, bias, rows
  COPY    in, out, F                     (Concat is one COPY per input)
  BINARY  a, out, F, b, kind (0 add, 1 sub, 2 mul, 3 div, 4 max, 5 min, 6 pow)
  SCALE   in, out, F, scale, shift
  GATHER  in, out, n_out, index
  CONV1D  in, out, C, L, M, K, stride, dilation, pad_left, groups, L_out, W, bias
  REDUCE  in, out, kind (0 mean, 1 sum, 2 max, 3 min), outer, axis, inner
The first row is a header: n_ops, input offset, input size, output offset, output size,
state size S. Each stream owns one row of `mem`: state in mem[:S], scratch after it,
so a step call unboxes few arrays (Numba's per-call cost grows with array arguments).
"""
import math

import numpy as np
from numba import njit

from .cells import (KERNEL, CFG_SIZE, activation, gru_pointwise, gru_step, layernorm,
                    lstm_pointwise, matmat_acc, mv, rnn_pointwise, set_bias)

PROG_WIDTH = 24
(OP_LINEAR, OP_LSTM, OP_GRU, OP_RNN, OP_ACT, OP_LNORM, OP_COPY, OP_BINARY, OP_SCALE,
 OP_GATHER, OP_CONV1D, OP_REDUCE) = range(1, 13)
BINARY_CODES = {"add": 0, "sub": 1, "mul": 2, "div": 3, "max": 4, "min": 5, "pow": 6}
REDUCE_CODES = {"mean": 0, "sum": 1, "max": 2, "min": 3}


@njit(inline="always", **KERNEL)
def _binary(a, b, kind):
    if kind == 0:
        return a + b
    if kind == 1:
        return a - b
    if kind == 2:
        return a * b
    if kind == 3:
        if b == 0:
            return np.float32(np.nan) if a == 0 or a != a else np.float32(np.inf) * a * math.copysign(1.0, b)
        return a / b
    if kind == 4:
        return max(a, b)
    if kind == 5:
        return min(a, b)
    return a ** b if a > 0 or b == math.floor(b) else np.float32(np.nan)


@njit(**KERNEL)
def _conv1d(x, out, w, C, L, M, K, stride, dil, pad, groups, L_out, w_off, b_off):
    cg = C // groups
    mg = M // groups
    for m in range(M):
        g = m // mg
        bias = w[b_off + m] if b_off >= 0 else np.float32(0.0)
        for t in range(L_out):
            acc = bias
            base = t * stride - pad
            for ci in range(cg):
                c = g * cg + ci
                wrow = w_off + (m * cg + ci) * K
                for k in range(K):
                    pos = base + k * dil
                    if 0 <= pos < L:
                        acc += w[wrow + k] * x[c * L + pos]
            out[m * L_out + t] = acc


@njit(**KERNEL)
def _reduce(x, out, kind, outer, axis, inner):
    for o in range(outer):
        for i in range(inner):
            base = o * axis * inner + i
            acc = x[base]
            for a in range(1, axis):
                v = x[base + a * inner]
                if kind <= 1:
                    acc += v
                elif kind == 2:
                    acc = max(acc, v)
                else:
                    acc = min(acc, v)
            if kind == 0:
                acc = acc / axis
            out[o * inner + i] = acc


@njit(**KERNEL)
def _run_ops(prog, w, st, sc):
    """Run every op once for one stream: st, sc are that stream's state and scratch rows."""
    for r in range(1, prog[0, 0] + 1):
        _run_op(prog, r, w, st, sc)


@njit(inline="always", **KERNEL)
def _run_op(prog, r, w, st, sc):
    """Op r of the program for one stream."""
    empty = w[0:0]
    if True:
        op = prog[r, 0]
        i0 = prog[r, 1]
        o0 = prog[r, 2]
        if op == OP_LINEAR:
            I = prog[r, 3]
            O = prog[r, 4]
            out = sc[o0:o0 + O]
            acc = sc[prog[r, 8]:prog[r, 8] + O]
            set_bias(out, w, prog[r, 6], O)
            mv(out, sc[i0:i0 + I], w, prog[r, 5], prog[r, 7], I, O, 0, O, acc)
        elif op == OP_LSTM:
            I = prog[r, 3]
            H = prog[r, 4]
            P = prog[r, 5]
            R = P if P > 0 else H
            g0 = prog[r, 12]
            gates = sc[g0:g0 + 4 * H]
            h = st[prog[r, 10]:prog[r, 10] + R]
            c = st[prog[r, 11]:prog[r, 11] + H]
            cfg = w[prog[r, 14]:prog[r, 14] + CFG_SIZE]
            p0 = prog[r, 15]
            peep = w[p0:p0 + 3 * H] if p0 >= 0 else empty
            acc = sc[prog[r, 19]:prog[r, 19] + 4 * H]
            set_bias(gates, w, prog[r, 8], 4 * H)
            mv(gates, sc[i0:i0 + I], w, prog[r, 6], prog[r, 16], I, 4 * H, 0, 4 * H, acc)
            mv(gates, h, w, prog[r, 7], prog[r, 17], R, 4 * H, 0, 4 * H, acc)
            if P > 0:
                hf0 = prog[r, 13]
                hfull = sc[hf0:hf0 + H]
                lstm_pointwise(gates, c, hfull, H, cfg, peep)
                set_bias(h, w, -1, P)
                mv(h, hfull, w, prog[r, 9], prog[r, 18], H, P, 0, P, acc)
            else:
                lstm_pointwise(gates, c, h, H, cfg, peep)
            out = sc[o0:o0 + R]
            for j in range(R):
                out[j] = h[j]
            if prog[r, 20]:
                outc = sc[o0 + R:o0 + R + H]
                for j in range(H):
                    outc[j] = c[j]
        elif op == OP_GRU:
            I = prog[r, 3]
            H = prog[r, 4]
            gx = sc[prog[r, 11]:prog[r, 11] + 3 * H]
            gh = sc[prog[r, 12]:prog[r, 12] + 3 * H]
            rh = sc[prog[r, 13]:prog[r, 13] + H]
            h = st[prog[r, 10]:prog[r, 10] + H]
            cfg = w[prog[r, 14]:prog[r, 14] + CFG_SIZE]
            acc = sc[prog[r, 17]:prog[r, 17] + 3 * H]
            set_bias(gx, w, prog[r, 8], 3 * H)
            mv(gx, sc[i0:i0 + I], w, prog[r, 6], prog[r, 15], I, 3 * H, 0, 3 * H, acc)
            gru_step(gx, gh, rh, h, H, w, prog[r, 7], prog[r, 9], prog[r, 5], cfg, prog[r, 16], acc)
            out = sc[o0:o0 + H]
            for j in range(H):
                out[j] = h[j]
        elif op == OP_RNN:
            I = prog[r, 3]
            H = prog[r, 4]
            h = st[prog[r, 9]:prog[r, 9] + H]
            cfg = w[prog[r, 10]:prog[r, 10] + CFG_SIZE]
            out = sc[o0:o0 + H]
            acc = sc[prog[r, 13]:prog[r, 13] + H]
            set_bias(out, w, prog[r, 8], H)
            mv(out, sc[i0:i0 + I], w, prog[r, 6], prog[r, 11], I, H, 0, H, acc)
            mv(out, h, w, prog[r, 7], prog[r, 12], H, H, 0, H, acc)
            rnn_pointwise(out, h, out, H, cfg)
        elif op == OP_ACT:
            F = prog[r, 3]
            a0 = prog[r, 5]
            activation(sc[i0:i0 + F], sc[o0:o0 + F], F, prog[r, 4], w[a0], w[a0 + 1], prog[r, 6])
        elif op == OP_LNORM:
            F = prog[r, 3]
            for row in range(prog[r, 7]):
                layernorm(sc[i0 + row * F:i0 + (row + 1) * F], sc[o0 + row * F:o0 + (row + 1) * F],
                          F, w[prog[r, 4]], w, prog[r, 5], prog[r, 6])
        elif op == OP_COPY:
            F = prog[r, 3]
            for j in range(F):
                sc[o0 + j] = sc[i0 + j]
        elif op == OP_BINARY:
            F = prog[r, 3]
            b0 = prog[r, 4]
            kind = prog[r, 5]
            for j in range(F):
                sc[o0 + j] = _binary(sc[i0 + j], sc[b0 + j], kind)
        elif op == OP_SCALE:
            F = prog[r, 3]
            s0 = prog[r, 4]
            t0 = prog[r, 5]
            for j in range(F):
                v = sc[i0 + j]
                if s0 >= 0:
                    v = v * w[s0 + j]
                if t0 >= 0:
                    v = v + w[t0 + j]
                sc[o0 + j] = v
        elif op == OP_GATHER:
            n = prog[r, 3]
            x0 = prog[r, 4]
            for j in range(n):
                k = int(w[x0 + j])
                sc[o0 + j] = sc[i0 + k] if k >= 0 else np.float32(0.0)
        elif op == OP_CONV1D:
            C = prog[r, 3]
            L = prog[r, 4]
            M = prog[r, 5]
            L_out = prog[r, 11]
            _conv1d(sc[i0:i0 + C * L], sc[o0:o0 + M * L_out], w, C, L, M, prog[r, 6], prog[r, 7],
                    prog[r, 8], prog[r, 9], prog[r, 10], L_out, prog[r, 12], prog[r, 13])
        elif op == OP_REDUCE:
            outer = prog[r, 4]
            axis = prog[r, 5]
            inner = prog[r, 6]
            _reduce(sc[i0:i0 + outer * axis * inner], sc[o0:o0 + outer * inner], prog[r, 3],
                    outer, axis, inner)


@njit(**KERNEL)
def _all_finite(x):
    for v in x.ravel():
        if not math.isfinite(v):
            return False
    return True


@njit(**KERNEL)
def step_one(prog, w, mem, x, y, check_finite):
    """One step of one stream: x (I,) -> y (O,). Returns 1 (state untouched) on NaN/Inf input."""
    if check_finite and not _all_finite(x):
        return 1
    in0 = prog[0, 1]
    out0 = prog[0, 3]
    S = prog[0, 5]
    row = mem[0]
    st = row[:S]
    sc = row[S:]
    xin = sc[in0:in0 + x.shape[0]]
    for j in range(x.shape[0]):
        xin[j] = x[j]
    _run_ops(prog, w, st, sc)
    yout = sc[out0:out0 + y.shape[0]]
    for j in range(y.shape[0]):
        y[j] = yout[j]
    return 0


@njit(**KERNEL)
def _run_op_streams(prog, r, w, mem, S):
    """Op r for every stream (row of mem). Float Linear/LSTM/RNN and reset-after GRU do their
    mat-vecs for all streams at once (matmat_acc: each weight read once per four streams,
    bit-identical per stream); everything else runs stream by stream."""
    n = mem.shape[0]
    op = prog[r, 0]
    i0 = S + prog[r, 1]
    o0 = S + prog[r, 2]
    if op == OP_LINEAR and prog[r, 7] < 0:
        I = prog[r, 3]
        O = prog[r, 4]
        for b in range(n):
            set_bias(mem[b, o0:o0 + O], w, prog[r, 6], O)
        matmat_acc(mem, o0, mem, i0, w, prog[r, 5], I, O)
        return
    if op == OP_LSTM and prog[r, 16] < 0 and prog[r, 17] < 0 and prog[r, 18] < 0:
        I = prog[r, 3]
        H = prog[r, 4]
        P = prog[r, 5]
        R = P if P > 0 else H
        g0 = S + prog[r, 12]
        h0 = prog[r, 10]
        c0 = prog[r, 11]
        cfg = w[prog[r, 14]:prog[r, 14] + CFG_SIZE]
        p0 = prog[r, 15]
        peep = w[p0:p0 + 3 * H] if p0 >= 0 else w[0:0]
        for b in range(n):
            set_bias(mem[b, g0:g0 + 4 * H], w, prog[r, 8], 4 * H)
        matmat_acc(mem, g0, mem, i0, w, prog[r, 6], I, 4 * H)
        matmat_acc(mem, g0, mem, h0, w, prog[r, 7], R, 4 * H)
        hf0 = S + prog[r, 13]
        for b in range(n):
            row = mem[b]
            if P > 0:
                lstm_pointwise(row[g0:g0 + 4 * H], row[c0:c0 + H], row[hf0:hf0 + H], H, cfg, peep)
                set_bias(row[h0:h0 + P], w, -1, P)
            else:
                lstm_pointwise(row[g0:g0 + 4 * H], row[c0:c0 + H], row[h0:h0 + H], H, cfg, peep)
        if P > 0:
            matmat_acc(mem, h0, mem, hf0, w, prog[r, 9], H, P)
        for b in range(n):
            row = mem[b]
            for j in range(R):
                row[o0 + j] = row[h0 + j]
            if prog[r, 20]:
                for j in range(H):
                    row[o0 + R + j] = row[c0 + j]
        return
    if op == OP_RNN and prog[r, 11] < 0 and prog[r, 12] < 0:
        I = prog[r, 3]
        H = prog[r, 4]
        h0 = prog[r, 9]
        cfg = w[prog[r, 10]:prog[r, 10] + CFG_SIZE]
        for b in range(n):
            set_bias(mem[b, o0:o0 + H], w, prog[r, 8], H)
        matmat_acc(mem, o0, mem, i0, w, prog[r, 6], I, H)
        matmat_acc(mem, o0, mem, h0, w, prog[r, 7], H, H)
        for b in range(n):
            row = mem[b]
            rnn_pointwise(row[o0:o0 + H], row[h0:h0 + H], row[o0:o0 + H], H, cfg)
        return
    if op == OP_GRU and prog[r, 5] and prog[r, 15] < 0 and prog[r, 16] < 0:
        I = prog[r, 3]
        H = prog[r, 4]
        gx0 = S + prog[r, 11]
        gh0 = S + prog[r, 12]
        h0 = prog[r, 10]
        cfg = w[prog[r, 14]:prog[r, 14] + CFG_SIZE]
        for b in range(n):
            set_bias(mem[b, gx0:gx0 + 3 * H], w, prog[r, 8], 3 * H)
            set_bias(mem[b, gh0:gh0 + 3 * H], w, prog[r, 9], 3 * H)
        matmat_acc(mem, gx0, mem, i0, w, prog[r, 6], I, 3 * H)
        matmat_acc(mem, gh0, mem, h0, w, prog[r, 7], H, 3 * H)
        for b in range(n):
            row = mem[b]
            gru_pointwise(row[gx0:gx0 + 3 * H], row[gh0:gh0 + 3 * H], row[h0:h0 + H], H, 1, cfg)
            for j in range(H):
                row[o0 + j] = row[h0 + j]
        return
    for b in range(n):
        row = mem[b]
        _run_op(prog, r, w, row[:S], row[S:])


@njit(**KERNEL)
def step_streams(prog, w, mem, x, y, check_finite):
    """One step for n streams: x (n, I) -> y (n, O). Returns 1 (state untouched) on NaN/Inf input.
    Op by op over all streams, so weights are shared between streams while in cache."""
    if check_finite and not _all_finite(x):
        return 1
    in0 = prog[0, 1]
    I = prog[0, 2]
    out0 = prog[0, 3]
    O = prog[0, 4]
    S = prog[0, 5]
    n = x.shape[0]
    for b in range(n):
        xin = mem[b, S + in0:S + in0 + I]
        xb = x[b]
        for j in range(I):
            xin[j] = xb[j]
    for r in range(1, prog[0, 0] + 1):
        _run_op_streams(prog, r, w, mem, S)
    for b in range(n):
        yout = mem[b, S + out0:S + out0 + O]
        yb = y[b]
        for j in range(O):
            yb[j] = yout[j]
    return 0


@njit(**KERNEL)
def step_sequence(prog, w, mem, xs, ys, check_finite):
    """T steps of one stream: xs (T, I) -> ys (T, O); same arithmetic as T step_one calls."""
    if check_finite and not _all_finite(xs):
        return 1
    in0 = prog[0, 1]
    I = prog[0, 2]
    out0 = prog[0, 3]
    O = prog[0, 4]
    S = prog[0, 5]
    row = mem[0]
    st = row[:S]
    sc = row[S:]
    xin = sc[in0:in0 + I]
    yout = sc[out0:out0 + O]
    for t in range(xs.shape[0]):
        xt = xs[t]
        for j in range(I):
            xin[j] = xt[j]
        _run_ops(prog, w, st, sc)
        yt = ys[t]
        for j in range(O):
            yt[j] = yout[j]
    return 0
