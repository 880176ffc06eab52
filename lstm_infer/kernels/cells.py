"""Cell math shared by the step interpreter and the whole-sequence kernels.

Everything works on flat float32 vectors. Weight matrices are stored (in, out)
row-major, i.e. the transpose of PyTorch's (out, in) `weight`, so a matrix-vector
product is a sum of scaled rows (axpy), the loop order LLVM vectorises best.
Sharing these functions is what makes `run()`, `step()` and `step_many()` agree.

Speed notes (measured in benchmarks/, see README): `error_model="numpy"` drops
Python's division-by-zero checks, whose branches stopped LLVM from vectorising any
loop with a division; `fastmath={"contract"}` only allows fused multiply-add. The
default LSTM/GRU cells use `fast_tanh` (a rational approximation, max abs error
3.5e-7 over all float32, tests/test_fast_math.py) so the whole cell vectorises.
"""
import math

import numpy as np
from numba import njit

from .. import _cache

# Activation codes used in compiled programs (order matches graph.ACTIVATIONS).
ACT_CODES = {"identity": 0, "relu": 1, "tanh": 2, "sigmoid": 3, "gelu": 4, "gelu_tanh": 5,
             "leaky_relu": 6, "elu": 7, "softplus": 8, "softmax": 9, "log_softmax": 10,
             "hard_sigmoid": 11, "affine": 12, "thresholded_relu": 13, "scaled_tanh": 14,
             "softsign": 15, "exp": 16, "log": 17, "sqrt": 18, "neg": 19, "abs": 20,
             "reciprocal": 21, "erf": 22, "clip": 23, "pow": 24}

# Gate activations of recurrent cells (ONNX `activations`), codes used in the cell config.
GATE_ACT_CODES = {"sigmoid": 0, "tanh": 1, "relu": 2, "affine": 3, "leaky_relu": 4,
                  "thresholded_relu": 5, "scaled_tanh": 6, "hard_sigmoid": 7, "elu": 8,
                  "softsign": 9, "softplus": 10}

# Recurrent cell config block, CFG_SIZE floats in the weight arena:
#   [0] mode (0: PyTorch defaults, fast path; 1: general)  [1] clip (0: none)
#   [2] input_forget  [3] has peephole  [4 + 3k .. 6 + 3k] activation k: code, alpha, beta
CFG_SIZE = 16

_INV_SQRT2 = np.float32(0.7071067811865476)
_NAN = np.float32(np.nan)
_INF = np.float32(np.inf)
_SQRT_2_OVER_PI = np.float32(0.7978845608028654)


KERNEL = dict(cache=_cache.ENABLED, error_model="numpy", fastmath={"contract"})


@njit(inline="always", **KERNEL)
def sigmoid(v):
    """Exact logistic function (the Activation op); the cells use fast_sigmoid."""
    return np.float32(1.0) / (np.float32(1.0) + math.exp(-v))


_TANH_CLAMP = np.float32(7.90531110763549805)


@njit(inline="always", **KERNEL)
def fast_tanh(x):
    """tanh as a 13/6 rational function on [-7.9, 7.9] (the minimax form Eigen uses);
    branch-free, so loops over it vectorise. Max abs error 3.5e-7 in float32."""
    x = _TANH_CLAMP if x > _TANH_CLAMP else x  # written so that NaN passes through
    x = -_TANH_CLAMP if x < -_TANH_CLAMP else x
    x2 = x * x
    p = np.float32(-2.76076847742355e-16)
    p = p * x2 + np.float32(2.00018790482477e-13)
    p = p * x2 + np.float32(-8.60467152213735e-11)
    p = p * x2 + np.float32(5.12229709037114e-08)
    p = p * x2 + np.float32(1.48572235717979e-05)
    p = p * x2 + np.float32(6.37261928875436e-04)
    p = p * x2 + np.float32(4.89352455891786e-03)
    q = np.float32(1.19825839466702e-06)
    q = q * x2 + np.float32(1.18534705686654e-04)
    q = q * x2 + np.float32(2.26843463243900e-03)
    q = q * x2 + np.float32(4.89352518554385e-03)
    return x * p / q


@njit(inline="always", **KERNEL)
def fast_sigmoid(x):
    """sigmoid(x) = (1 + tanh(x/2)) / 2; max abs error 2.3e-7."""
    return np.float32(0.5) * fast_tanh(np.float32(0.5) * x) + np.float32(0.5)


@njit(**KERNEL)
def matvec_acc(out, x, w, w_off, rows, cols):
    """out[j] += sum_k x[k] * W[k, j] with W = w[w_off : w_off + rows*cols] as (rows, cols)."""
    matvec_cols(out, x, w, w_off, rows, cols, 0, cols)


@njit(**KERNEL)
def matvec_cols(out, x, w, w_off, rows, stride, c0, n):
    """out[j] += sum_k x[k] * W[k, c0 + j], j < n, for W (rows, stride) at w[w_off:].

    Four rows of W per pass: out is loaded and stored once per four rows, which
    matters because the loop is bound by cache bandwidth, not arithmetic. Rows are
    sliced before the loop so every index is `j`, which Numba knows is >= 0: an index
    like `w[base + j]` gets a negative-index wrap-around check that turns the
    vector load into a gather (4-5x slower, measured)."""
    k = 0
    while k + 4 <= rows:
        x0 = x[k]
        x1 = x[k + 1]
        x2 = x[k + 2]
        x3 = x[k + 3]
        b0 = w_off + k * stride + c0
        r0 = w[b0:b0 + n]
        r1 = w[b0 + stride:b0 + stride + n]
        r2 = w[b0 + 2 * stride:b0 + 2 * stride + n]
        r3 = w[b0 + 3 * stride:b0 + 3 * stride + n]
        for j in range(n):
            out[j] += x0 * r0[j] + x1 * r1[j] + x2 * r2[j] + x3 * r3[j]
        k += 4
    while k < rows:
        xk = x[k]
        b0 = w_off + k * stride + c0
        r0 = w[b0:b0 + n]
        for j in range(n):
            out[j] += xk * r0[j]
        k += 1


@njit(**KERNEL)
def matmat_acc(out, o_off, x, x_off, w, w_off, rows, cols):
    """out[b, o_off + j] += sum_k x[b, x_off + k] * W[k, j] for every row b: several vectors
    times one float32 matrix W (rows, cols) at w[w_off:].

    Four vectors share each weight load (4-5x less weight traffic than one mat-vec per
    vector; 2-4x faster measured), and each vector's sums are formed in exactly
    matvec_cols's order, so the result is bit-identical to calling it row by row."""
    nb = x.shape[0]
    b = 0
    while b + 4 <= nb:
        o0 = out[b, o_off:o_off + cols]
        o1 = out[b + 1, o_off:o_off + cols]
        o2 = out[b + 2, o_off:o_off + cols]
        o3 = out[b + 3, o_off:o_off + cols]
        k = 0
        while k + 4 <= rows:
            b0 = w_off + k * cols
            r0 = w[b0:b0 + cols]
            r1 = w[b0 + cols:b0 + 2 * cols]
            r2 = w[b0 + 2 * cols:b0 + 3 * cols]
            r3 = w[b0 + 3 * cols:b0 + 4 * cols]
            xk = x_off + k
            a0, a1, a2, a3 = x[b, xk], x[b, xk + 1], x[b, xk + 2], x[b, xk + 3]
            c0, c1, c2, c3 = x[b + 1, xk], x[b + 1, xk + 1], x[b + 1, xk + 2], x[b + 1, xk + 3]
            d0, d1, d2, d3 = x[b + 2, xk], x[b + 2, xk + 1], x[b + 2, xk + 2], x[b + 2, xk + 3]
            e0, e1, e2, e3 = x[b + 3, xk], x[b + 3, xk + 1], x[b + 3, xk + 2], x[b + 3, xk + 3]
            for j in range(cols):
                p = r0[j]
                q = r1[j]
                s = r2[j]
                t = r3[j]
                o0[j] += a0 * p + a1 * q + a2 * s + a3 * t
                o1[j] += c0 * p + c1 * q + c2 * s + c3 * t
                o2[j] += d0 * p + d1 * q + d2 * s + d3 * t
                o3[j] += e0 * p + e1 * q + e2 * s + e3 * t
            k += 4
        while k < rows:
            r0 = w[w_off + k * cols:w_off + (k + 1) * cols]
            xk = x_off + k
            a0, c0, d0, e0 = x[b, xk], x[b + 1, xk], x[b + 2, xk], x[b + 3, xk]
            for j in range(cols):
                p = r0[j]
                o0[j] += a0 * p
                o1[j] += c0 * p
                o2[j] += d0 * p
                o3[j] += e0 * p
            k += 1
        b += 4
    while b < nb:
        matvec_cols(out[b, o_off:o_off + cols], x[b, x_off:x_off + rows], w, w_off, rows, cols, 0, cols)
        b += 1


@njit(**KERNEL)
def matvec_q8(out, x, w, q_off, s_off, rows, stride, c0, n, acc):
    """Like matvec_cols for an int8 matrix Q (bytes at q_off in w viewed as int8) with
    per-column scales s (floats at w[s_off:]): out[j] += s[c0+j] * sum_k x[k] * Q[k, c0+j].
    Dequantised on the fly; `acc` is n floats of scratch."""
    q = w.view(np.int8)
    for j in range(n):
        acc[j] = np.float32(0.0)
    k = 0
    while k + 4 <= rows:
        x0 = x[k]
        x1 = x[k + 1]
        x2 = x[k + 2]
        x3 = x[k + 3]
        b0 = q_off + k * stride + c0
        r0 = q[b0:b0 + n]
        r1 = q[b0 + stride:b0 + stride + n]
        r2 = q[b0 + 2 * stride:b0 + 2 * stride + n]
        r3 = q[b0 + 3 * stride:b0 + 3 * stride + n]
        for j in range(n):
            acc[j] += (x0 * np.float32(r0[j]) + x1 * np.float32(r1[j])
                       + x2 * np.float32(r2[j]) + x3 * np.float32(r3[j]))
        k += 4
    while k < rows:
        xk = x[k]
        b0 = q_off + k * stride + c0
        r0 = q[b0:b0 + n]
        for j in range(n):
            acc[j] += xk * np.float32(r0[j])
        k += 1
    sc = w[s_off + c0:s_off + c0 + n]
    for j in range(n):
        out[j] += sc[j] * acc[j]


@njit(**KERNEL)
def mv(out, x, w, off, s_off, rows, stride, c0, n, acc):
    """Mat-vec over columns [c0, c0+n) of a float32 (s_off < 0) or int8 matrix."""
    if s_off < 0:
        matvec_cols(out, x, w, off, rows, stride, c0, n)
    else:
        matvec_q8(out, x, w, off, s_off, rows, stride, c0, n, acc)


@njit(**KERNEL)
def set_bias(out, w, b_off, n):
    """out[:n] = bias, or zeros when b_off < 0 (no bias)."""
    if b_off < 0:
        for j in range(n):
            out[j] = np.float32(0.0)
    else:
        b = w[b_off:b_off + n]
        for j in range(n):
            out[j] = b[j]


@njit(**KERNEL)
def gate_act(v, kind, a, b):
    """One ONNX recurrent activation (see GATE_ACT_CODES)."""
    if kind == 0:
        return fast_sigmoid(v)
    if kind == 1:
        return fast_tanh(v)
    if kind == 2:
        return v if v > 0 else np.float32(0.0)
    if kind == 3:
        return a * v + b
    if kind == 4:
        return v if v >= 0 else a * v
    if kind == 5:
        return v if v > a else np.float32(0.0)
    if kind == 6:
        return a * math.tanh(b * v)
    if kind == 7:
        return min(max(a * v + b, np.float32(0.0)), np.float32(1.0))
    if kind == 8:
        return v if v >= 0 else a * (math.exp(v) - np.float32(1.0))
    if kind == 9:
        return v / (np.float32(1.0) + abs(v))
    return math.log1p(math.exp(v)) if v < 20 else v  # softplus


@njit(**KERNEL)
def clipv(v, clip):
    if clip > 0:
        if v > clip:
            return clip
        if v < -clip:
            return -clip
    return v


@njit(**KERNEL)
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


@njit(**KERNEL)
def lstm_pointwise(gates, c, hfull, H, cfg, peep):
    """PyTorch gate order i, f, g, o: c = f*c + i*g; hfull = o*tanh(c). Updates c in place."""
    if cfg[0] != 0:
        lstm_pointwise_general(gates, c, hfull, H, cfg, peep)
        return
    gi = gates[0:H]  # sliced so each index is a plain j >= 0 (see matvec_acc)
    gf = gates[H:2 * H]
    gg = gates[2 * H:3 * H]
    go = gates[3 * H:4 * H]
    for j in range(H):
        cj = fast_sigmoid(gf[j]) * c[j] + fast_sigmoid(gi[j]) * fast_tanh(gg[j])
        c[j] = cj
        hfull[j] = fast_sigmoid(go[j]) * fast_tanh(cj)


@njit(**KERNEL)
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
    xr, xz, xn = gx[0:H], gx[H:2 * H], gx[2 * H:3 * H]
    hr, hz, hn = gh[0:H], gh[H:2 * H], gh[2 * H:3 * H]
    one = np.float32(1.0)
    if lbr:
        for j in range(H):
            z = fast_sigmoid(xz[j] + hz[j])
            n = fast_tanh(xn[j] + fast_sigmoid(xr[j] + hr[j]) * hn[j])
            h[j] = (one - z) * n + z * h[j]
    else:
        for j in range(H):
            z = fast_sigmoid(xz[j] + hz[j])
            n = fast_tanh(xn[j] + hn[j])
            h[j] = (one - z) * n + z * h[j]


@njit(**KERNEL)
def gru_step(gx, gh, rh, h, H, w, whh_off, bhh_off, lbr, cfg, whh_s, acc):
    """One GRU update of h in place, given gx = x W_ih + b_ih (3H). gh, rh are scratch (3H, H)."""
    if lbr:
        set_bias(gh, w, bhh_off, 3 * H)
        mv(gh, h, w, whh_off, whh_s, H, 3 * H, 0, 3 * H, acc)
    else:
        # r and z need h W_h{r,z}; n needs (r*h) W_hn, so compute the first 2H columns,
        # then r, then the last H columns from r*h. W_hh rows are (H, 3H).
        set_bias(gh, w, bhh_off, 3 * H)
        mv(gh[0:2 * H], h, w, whh_off, whh_s, H, 3 * H, 0, 2 * H, acc)
        general = cfg[0] != 0
        for k in range(H):
            if general:
                r = gate_act(clipv(gx[k] + gh[k], cfg[1]), int(cfg[4]), cfg[5], cfg[6])
            else:
                r = fast_sigmoid(gx[k] + gh[k])
            rh[k] = r * h[k]
        mv(gh[2 * H:3 * H], rh, w, whh_off, whh_s, H, 3 * H, 2 * H, H, acc)
    gru_pointwise(gx, gh, h, H, lbr, cfg)


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


@njit(**KERNEL)
def activation(x, out, n, kind, alpha, beta, group):
    """Element-wise activation of x[:n] into out[:n] (may alias); softmax/log_softmax over
    consecutive groups of `group` elements."""
    if kind == 9 or kind == 10:
        for g0 in range(0, n, group):
            _softmax(x[g0:g0 + group], out[g0:g0 + group], group, kind)
        return
    for j in range(n):
        out[j] = _elementwise(x[j], kind, alpha, beta)


@njit(**KERNEL)
def _softmax(x, out, n, kind):
    """softmax (kind 9) or log_softmax (10) over x[:n], max-shifted."""
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


@njit(**KERNEL)
def _elementwise(v, kind, alpha, beta):
    if kind <= 8:
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
        return r
    if kind == 11:
        return min(max(alpha * v + beta, np.float32(0.0)), np.float32(1.0))
    if kind == 12:
        return alpha * v + beta
    if kind == 13:
        return v if v > alpha else np.float32(0.0)
    if kind == 14:
        return alpha * math.tanh(beta * v)
    if kind == 15:
        return v / (np.float32(1.0) + abs(v))
    if kind == 16:
        return math.exp(v)
    if kind == 17:
        return math.log(v) if v > 0 else (-_INF if v == 0 else _NAN)
    if kind == 18:
        return math.sqrt(v) if v >= 0 else _NAN
    if kind == 19:
        return -v
    if kind == 20:
        return abs(v)
    if kind == 21:
        return np.float32(1.0) / v if v != 0 else (-_INF if math.copysign(1.0, v) < 0 else _INF)
    if kind == 22:
        return math.erf(v)
    if kind == 23:
        return min(max(v, alpha), beta)
    return v ** alpha if v > 0 or alpha == math.floor(alpha) else _NAN  # pow, constant exponent


@njit(**KERNEL)
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
