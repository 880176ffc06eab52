"""Activation: element-wise functions, and softmax / log_softmax over groups.

`kind` picks the function; `alpha`/`beta` parameterise some (leaky_relu, elu, clip, ...,
see docs/FORMAT.md); softmax and log_softmax work on consecutive groups of `axis_size`.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..kernels import KERNEL
from .base import IN, OUT, OpDef, Signature, SpecError, integer, new_row, number

OPCODE = 5
SIZE, KIND, PARAMS, GROUP = range(3, 7)  # PARAMS: offset of [alpha, beta] in the weight arena

# Codes used in compiled programs.
ACT_CODES = {"identity": 0, "relu": 1, "tanh": 2, "sigmoid": 3, "gelu": 4, "gelu_tanh": 5,
             "leaky_relu": 6, "elu": 7, "softplus": 8, "softmax": 9, "log_softmax": 10,
             "hard_sigmoid": 11, "affine": 12, "thresholded_relu": 13, "scaled_tanh": 14,
             "softsign": 15, "exp": 16, "log": 17, "sqrt": 18, "neg": 19, "abs": 20,
             "reciprocal": 21, "erf": 22, "clip": 23, "pow": 24}
ACTIVATIONS = tuple(ACT_CODES)
DEFAULT_ALPHA = {"leaky_relu": 0.01, "elu": 1.0}

_INV_SQRT2 = np.float32(0.7071067811865476)
_NAN = np.float32(np.nan)
_INF = np.float32(np.inf)
_SQRT_2_OVER_PI = np.float32(0.7978845608028654)


def spec(a: dict) -> Signature:
    f = integer(a, "size")
    if a.get("kind") not in ACTIVATIONS:
        raise SpecError(f"activation kind must be one of {', '.join(ACTIVATIONS)}; got {a.get('kind')!r}")
    number(a, "alpha", DEFAULT_ALPHA.get(a["kind"], 0.0))
    number(a, "beta", 0.0)
    group = integer(a, "axis_size", default=f)
    if f % group:
        raise SpecError(f"attribute 'axis_size' {group} does not divide size {f}")
    return Signature([f], f, {})


def emit(em, node, ins: list[int], out: int, state: dict) -> None:
    a = node.attrs
    kind = a["kind"]
    em.add_row(new_row(OPCODE, {
        IN: ins[0], OUT: out, SIZE: a["size"], KIND: ACT_CODES[kind],
        PARAMS: em.const(a.get("alpha", DEFAULT_ALPHA.get(kind, 0.0)), a.get("beta", 0.0)),
        GROUP: a.get("axis_size", a["size"])}))


@njit(**KERNEL)
def step(prog, r, w, st, sc):
    i0 = prog[r, IN]
    o0 = prog[r, OUT]
    F = prog[r, SIZE]
    a0 = prog[r, PARAMS]
    activation(sc[i0:i0 + F], sc[o0:o0 + F], F, prog[r, KIND], w[a0], w[a0 + 1], prog[r, GROUP])


@njit(inline="always", **KERNEL)
def sigmoid(v):
    """Exact logistic function (the Activation op); the cells use fast_sigmoid."""
    return np.float32(1.0) / (np.float32(1.0) + math.exp(-v))


@njit(**KERNEL)
def activation(x, out, n, kind, alpha, beta, group):
    """Element-wise activation of x[:n] into out[:n] (may alias); softmax/log_softmax over
    consecutive groups of `group` elements."""
    if kind == 9 or kind == 10:
        for g0 in range(0, n, group):
            _softmax(x[g0:g0 + group], out[g0:g0 + group], group, kind)
        return
    # relu and sqrt in loops of their own: LLVM vectorises them (the per-element branch
    # on `kind` in _elementwise stops it); same formulas as there
    if kind == 1:
        for j in range(n):
            v = x[j]
            out[j] = v if v > 0 else np.float32(0.0)
        return
    if kind == 18:
        for j in range(n):
            v = x[j]
            out[j] = math.sqrt(v) if v >= 0 else _NAN
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



def describe(node, out_size: int) -> str:
    return f"{node.attrs['kind']}"


OPS = (OpDef("Activation", spec, emit, describe=describe),)
