"""An independent float64 numpy implementation of the graph semantics (docs/FORMAT.md),
used to check the Numba kernels op by op, including forms torch lacks (reset-before GRU)."""
from __future__ import annotations

import math

import numpy as np


def _sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def _act(kind, v, alpha):
    if kind == "identity":
        return v
    if kind == "relu":
        return np.maximum(v, 0)
    if kind == "tanh":
        return np.tanh(v)
    if kind == "sigmoid":
        return _sig(v)
    if kind == "gelu":
        erf = np.vectorize(math.erf)
        return 0.5 * v * (1 + erf(v / math.sqrt(2)))
    if kind == "gelu_tanh":
        return 0.5 * v * (1 + np.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3)))
    if kind == "leaky_relu":
        return np.where(v >= 0, v, alpha * v)
    if kind == "elu":
        return np.where(v > 0, v, alpha * (np.exp(v) - 1))
    if kind == "softplus":
        return np.where(v > 20, v, np.log1p(np.exp(np.minimum(v, 20))))
    if kind == "softmax":
        e = np.exp(v - v.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    if kind == "log_softmax":
        m = v.max(-1, keepdims=True)
        return v - m - np.log(np.exp(v - m).sum(-1, keepdims=True))
    raise ValueError(kind)


def _w(node, role):
    w = node["weights"].get(role)
    return None if w is None else np.asarray(w, np.float64)


def run_reference(doc: dict, weights: dict, X: np.ndarray) -> np.ndarray:
    """doc: graph document; weights: tensor name -> array; X (T, I) -> (T, sum of outputs)."""
    vals = {doc["inputs"][0]["name"]: np.asarray(X, np.float64)}
    T = X.shape[0]
    for nd in doc["nodes"]:
        node = {"weights": {r: weights[t] for r, t in nd.get("weights", {}).items()}}
        a = nd["attrs"]
        ins = [vals[v] for v in nd["inputs"]]
        x = ins[0]
        op = nd["op"]
        if op == "Linear":
            y = x @ _w(node, "W")
            if _w(node, "bias") is not None:
                y = y + _w(node, "bias")
        elif op in ("LSTM", "GRU", "RNN"):
            H = a["hidden_size"]
            order = range(T - 1, -1, -1) if a.get("reverse") else range(T)
            Wih, Whh = _w(node, "W_ih"), _w(node, "W_hh")
            if op == "LSTM":
                P = a.get("proj_size", 0)
                R = P or H
                b = _w(node, "bias") if _w(node, "bias") is not None else np.zeros(4 * H)
                h = _w(node, "h0") if _w(node, "h0") is not None else np.zeros(R)
                c = _w(node, "c0") if _w(node, "c0") is not None else np.zeros(H)
                y = np.zeros((T, R))
                for t in order:
                    g = x[t] @ Wih + h @ Whh + b
                    i, f, gg, o = _sig(g[:H]), _sig(g[H:2 * H]), np.tanh(g[2 * H:3 * H]), _sig(g[3 * H:])
                    c = f * c + i * gg
                    h = o * np.tanh(c)
                    if P:
                        h = h @ _w(node, "W_hr")
                    y[t] = h
            elif op == "GRU":
                bi = _w(node, "b_ih") if _w(node, "b_ih") is not None else np.zeros(3 * H)
                bh = _w(node, "b_hh") if _w(node, "b_hh") is not None else np.zeros(3 * H)
                h = _w(node, "h0") if _w(node, "h0") is not None else np.zeros(H)
                lbr = a.get("linear_before_reset", True)
                y = np.zeros((T, H))
                for t in order:
                    gx = x[t] @ Wih + bi
                    r = _sig(gx[:H] + h @ Whh[:, :H] + bh[:H])
                    z = _sig(gx[H:2 * H] + h @ Whh[:, H:2 * H] + bh[H:2 * H])
                    if lbr:
                        n = np.tanh(gx[2 * H:] + r * (h @ Whh[:, 2 * H:] + bh[2 * H:]))
                    else:
                        n = np.tanh(gx[2 * H:] + (r * h) @ Whh[:, 2 * H:] + bh[2 * H:])
                    h = (1 - z) * n + z * h
                    y[t] = h
            else:
                b = _w(node, "bias") if _w(node, "bias") is not None else np.zeros(H)
                h = _w(node, "h0") if _w(node, "h0") is not None else np.zeros(H)
                y = np.zeros((T, H))
                relu = a.get("nonlinearity", "tanh") == "relu"
                for t in order:
                    v = x[t] @ Wih + h @ Whh + b
                    h = np.maximum(v, 0) if relu else np.tanh(v)
                    y[t] = h
        elif op == "Activation":
            y = _act(a["kind"], x, a.get("alpha", {"leaky_relu": 0.01, "elu": 1.0}.get(a["kind"], 0.0)))
        elif op == "LayerNorm":
            mu = x.mean(-1, keepdims=True)
            var = ((x - mu) ** 2).mean(-1, keepdims=True)
            y = (x - mu) / np.sqrt(var + a.get("eps", 1e-5))
            if _w(node, "weight") is not None:
                y = y * _w(node, "weight")
            if _w(node, "bias") is not None:
                y = y + _w(node, "bias")
        elif op == "Concat":
            y = np.concatenate(ins, -1)
        elif op == "Add":
            y = ins[0] + ins[1]
        elif op == "Mul":
            y = ins[0] * ins[1]
        else:
            raise ValueError(op)
        vals[nd["outputs"][0]] = y
    return np.concatenate([vals[o["name"]] for o in doc["outputs"]], -1)
