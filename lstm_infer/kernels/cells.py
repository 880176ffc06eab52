"""Cell math shared by the step interpreter and the whole-sequence kernels.

Everything works on flat float32 vectors. Weight matrices are stored (in, out)
row-major, i.e. the transpose of PyTorch's (out, in) `weight`, so a matrix-vector
product is a sum of scaled rows (axpy), the loop order LLVM vectorises best.
Sharing these functions is what makes `run()`, `step()` and `step_many()` agree.
"""
import math

import numpy as np
from numba import njit

# Activation codes used in compiled programs (order matches graph.ACTIVATIONS).
ACT_CODES = {"identity": 0, "relu": 1, "tanh": 2, "sigmoid": 3, "gelu": 4, "gelu_tanh": 5,
             "leaky_relu": 6, "elu": 7, "softplus": 8, "softmax": 9, "log_softmax": 10}

_INV_SQRT2 = np.float32(0.7071067811865476)
_SQRT_2_OVER_PI = np.float32(0.7978845608028654)


@njit(cache=True, inline="always")
def sigmoid(v):
    return np.float32(1.0) / (np.float32(1.0) + math.exp(-v))


@njit(cache=True)
def matvec_acc(out, x, w, w_off, rows, cols):
    """out[j] += sum_k x[k] * W[k, j] with W = w[w_off : w_off + rows*cols] as (rows, cols)."""
    for k in range(rows):
        xk = x[k]
        base = w_off + k * cols
        for j in range(cols):
            out[j] += xk * w[base + j]


@njit(cache=True)
def set_bias(out, w, b_off, n):
    """out[:n] = bias, or zeros when b_off < 0 (no bias)."""
    if b_off < 0:
        for j in range(n):
            out[j] = np.float32(0.0)
    else:
        for j in range(n):
            out[j] = w[b_off + j]


@njit(cache=True)
def lstm_pointwise(gates, c, hfull, H):
    """PyTorch gate order i, f, g, o: c = f*c + i*g; hfull = o*tanh(c). Updates c in place."""
    for j in range(H):
        ig = sigmoid(gates[j])
        fg = sigmoid(gates[H + j])
        gg = math.tanh(gates[2 * H + j])
        og = sigmoid(gates[3 * H + j])
        cj = fg * c[j] + ig * gg
        c[j] = cj
        hfull[j] = og * math.tanh(cj)


@njit(cache=True)
def gru_pointwise(gx, gh, h, H, lbr):
    """PyTorch gate order r, z, n; gx = x W_ih + b_ih, gh = h W_hh (+ b_hh when lbr).

    For the reset-before form (lbr == 0) gh[2H:3H] must already hold (r*h) W_hn + b_hn,
    which the caller computes after r is known; see gru_step.
    """
    for j in range(H):
        z = sigmoid(gx[H + j] + gh[H + j])
        if lbr:
            r = sigmoid(gx[j] + gh[j])
            n = math.tanh(gx[2 * H + j] + r * gh[2 * H + j])
        else:
            n = math.tanh(gx[2 * H + j] + gh[2 * H + j])
        h[j] = (np.float32(1.0) - z) * n + z * h[j]


@njit(cache=True)
def gru_step(gx, gh, rh, h, H, w, whh_off, bhh_off, lbr):
    """One GRU update of h in place, given gx = x W_ih + b_ih (3H). gh, rh are scratch (3H, H)."""
    if lbr:
        set_bias(gh, w, bhh_off, 3 * H)
        matvec_acc(gh, h, w, whh_off, H, 3 * H)
    else:
        # r and z need h W_h{r,z}; n needs (r*h) W_hn, so compute the first 2H columns,
        # then r, then the last H columns from r*h. W_hh rows are (H, 3H).
        set_bias(gh, w, bhh_off, 3 * H)
        for k in range(H):
            hk = h[k]
            base = whh_off + k * 3 * H
            for j in range(2 * H):
                gh[j] += hk * w[base + j]
        for k in range(H):
            r = sigmoid(gx[k] + gh[k])
            rh[k] = r * h[k]
        for k in range(H):
            rk = rh[k]
            base = whh_off + k * 3 * H + 2 * H
            for j in range(H):
                gh[2 * H + j] += rk * w[base + j]
    gru_pointwise(gx, gh, h, H, lbr)


@njit(cache=True)
def activation(x, out, n, kind, alpha):
    """Element-wise or whole-vector activation of x[:n] into out[:n] (may alias)."""
    if kind == 9 or kind == 10:  # softmax / log_softmax over the vector, max-shifted
        m = x[0]
        for j in range(1, n):
            if x[j] > m:
                m = x[j]
        s = np.float32(0.0)
        for j in range(n):
            s += math.exp(x[j] - m)
        if kind == 9:
            inv = np.float32(1.0) / s
            for j in range(n):
                out[j] = math.exp(x[j] - m) * inv
        else:
            ls = math.log(s)
            for j in range(n):
                out[j] = x[j] - m - ls
        return
    for j in range(n):
        v = x[j]
        if kind == 0:
            r = v
        elif kind == 1:
            r = v if v > 0 else np.float32(0.0)
        elif kind == 2:
            r = math.tanh(v)
        elif kind == 3:
            r = sigmoid(v)
        elif kind == 4:
            r = np.float32(0.5) * v * (np.float32(1.0) + math.erf(v * _INV_SQRT2))
        elif kind == 5:
            r = np.float32(0.5) * v * (np.float32(1.0) + math.tanh(
                _SQRT_2_OVER_PI * (v + np.float32(0.044715) * v * v * v)))
        elif kind == 6:
            r = v if v >= 0 else alpha * v
        elif kind == 7:
            r = v if v > 0 else alpha * (math.exp(v) - np.float32(1.0))
        else:  # softplus, PyTorch's threshold 20
            r = v if v > 20 else math.log1p(math.exp(v))
        out[j] = r


@njit(cache=True)
def layernorm(x, out, n, eps, w, w_off, b_off):
    """(x - mean) / sqrt(var + eps) * weight + bias, two-pass in float64 for stability."""
    s = 0.0
    for j in range(n):
        s += x[j]
    mean = s / n
    v = 0.0
    for j in range(n):
        d = x[j] - mean
        v += d * d
    inv = 1.0 / math.sqrt(v / n + eps)
    for j in range(n):
        r = np.float32((x[j] - mean) * inv)
        if w_off >= 0:
            r = r * w[w_off + j]
        if b_off >= 0:
            r = r + w[b_off + j]
        out[j] = r
