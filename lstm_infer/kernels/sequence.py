"""Whole-sequence recurrences for run(): the input projection of every step is one
matrix product done by the caller (model._project, matmat_acc), so these loops only add the
recurrent term and apply the cell. They call the same cell functions as the
step interpreter. Layout: time-major (T, B, F) float32; `out` must be zeroed by the
caller, since steps at or past lengths[b] are not written (ONNX sequence_lens).

When every sequence has the full length, the loops run time-outer and batch-inner so
that one matmat_acc per step multiplies all B states by W_hh (each weight read once per
step, not B times); per sequence the arithmetic is the same as the one-sequence loop.
"""

import numpy as np
from numba import njit

from .cells import (KERNEL, gru_pointwise, gru_step, lstm_pointwise, matmat_acc, matvec_acc,
                    rnn_pointwise, set_bias)


@njit(**KERNEL)
def _full_length(lengths, T):
    for b in range(lengths.shape[0]):
        if lengths[b] != T:
            return False
    return True


@njit(**KERNEL)
def lstm_sequence(gx, w_hh, w_hr, h0, c0, reverse, lengths, cfg, peep, out):
    """gx (T, B, 4H) = x W_ih + bias; w_hh (R, 4H); w_hr (H, P) or (0, 0); out (T, B, R),
    or (T, B, R + H) to also output the cell state after h."""
    T, B, G = gx.shape
    H = G // 4
    R = w_hh.shape[0]
    P = w_hr.shape[1]
    whh = w_hh.ravel()
    whr = w_hr.ravel()
    if B > 1 and _full_length(lengths, T):
        hs = np.empty((B, R), np.float32)
        cs = np.empty((B, H), np.float32)
        for b in range(B):
            hs[b] = h0
            cs[b] = c0
        gb = np.empty((B, G), np.float32)
        hf = np.empty((B, H), np.float32)
        for s in range(T):
            t = T - 1 - s if reverse else s
            gb[:, :] = gx[t]
            matmat_acc(gb, 0, hs, 0, whh, 0, R, G)
            for b in range(B):
                if P > 0:
                    lstm_pointwise(gb[b], cs[b], hf[b], H, cfg, peep)
                else:
                    lstm_pointwise(gb[b], cs[b], hs[b], H, cfg, peep)
            if P > 0:
                hs[:, :] = 0.0
                matmat_acc(hs, 0, hf, 0, whr, 0, H, P)
            out[t, :, :R] = hs
            if out.shape[2] > R:
                out[t, :, R:] = cs
        return
    gates = np.empty(G, np.float32)
    hfull = np.empty(H, np.float32)
    for b in range(B):
        h = h0.copy()
        c = c0.copy()
        L = lengths[b]
        for s in range(L):
            t = L - 1 - s if reverse else s
            for j in range(G):
                gates[j] = gx[t, b, j]
            matvec_acc(gates, h, whh, 0, R, G)
            if P > 0:
                lstm_pointwise(gates, c, hfull, H, cfg, peep)
                set_bias(h, whr, -1, P)
                matvec_acc(h, hfull, whr, 0, H, P)
            else:
                lstm_pointwise(gates, c, h, H, cfg, peep)
            for j in range(R):
                out[t, b, j] = h[j]
            if out.shape[2] > R:
                for j in range(H):
                    out[t, b, R + j] = c[j]


@njit(**KERNEL)
def gru_sequence(gx, w_hh, b_hh, has_bhh, h0, lbr, reverse, lengths, cfg, out):
    """gx (T, B, 3H) = x W_ih + b_ih; w_hh (H, 3H); b_hh (3H) used when has_bhh."""
    T, B, G = gx.shape
    H = G // 3
    # gru_step reads W_hh and b_hh from one flat array: pack them [W_hh | b_hh].
    w = np.empty(H * G + G, np.float32)
    w[:H * G] = w_hh.ravel()
    w[H * G:] = b_hh
    bhh_off = H * G if has_bhh else -1
    g = np.empty(G, np.float32)
    gh = np.empty(G, np.float32)
    rh = np.empty(H, np.float32)
    acc = np.empty(G, np.float32)
    if B > 1 and lbr and _full_length(lengths, T):
        hs = np.empty((B, H), np.float32)
        for b in range(B):
            hs[b] = h0
        ghb = np.empty((B, G), np.float32)
        for s in range(T):
            t = T - 1 - s if reverse else s
            for b in range(B):
                set_bias(ghb[b], w, bhh_off, G)
            matmat_acc(ghb, 0, hs, 0, w, 0, H, G)
            for b in range(B):
                gru_pointwise(gx[t, b], ghb[b], hs[b], H, lbr, cfg)
            out[t] = hs
        return
    for b in range(B):
        h = h0.copy()
        L = lengths[b]
        for s in range(L):
            t = L - 1 - s if reverse else s
            for j in range(G):
                g[j] = gx[t, b, j]
            gru_step(g, gh, rh, h, H, w, 0, bhh_off, lbr, cfg, -1, acc)
            for j in range(H):
                out[t, b, j] = h[j]


@njit(**KERNEL)
def rnn_sequence(gx, w_hh, h0, reverse, lengths, cfg, out):
    """gx (T, B, H) = x W_ih + bias; h = f(gx + h W_hh)."""
    T, B, H = gx.shape
    whh = w_hh.ravel()
    acc = np.empty(H, np.float32)
    y = np.empty(H, np.float32)
    if B > 1 and _full_length(lengths, T):
        hs = np.empty((B, H), np.float32)
        for b in range(B):
            hs[b] = h0
        ab = np.empty((B, H), np.float32)
        for s in range(T):
            t = T - 1 - s if reverse else s
            ab[:, :] = gx[t]
            matmat_acc(ab, 0, hs, 0, whh, 0, H, H)
            for b in range(B):
                rnn_pointwise(ab[b], hs[b], y, H, cfg)
            out[t] = hs
        return
    for b in range(B):
        h = h0.copy()
        L = lengths[b]
        for s in range(L):
            t = L - 1 - s if reverse else s
            for j in range(H):
                acc[j] = gx[t, b, j]
            matvec_acc(acc, h, whh, 0, H, H)
            rnn_pointwise(acc, h, y, H, cfg)
            for j in range(H):
                out[t, b, j] = y[j]
