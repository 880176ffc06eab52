"""An independent float64 numpy implementation of the graph semantics (docs/FORMAT.md),
used to check the Numba kernels op by op, including forms torch lacks (reset-before GRU)."""
from __future__ import annotations

import math

import numpy as np


def _sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def _act(kind, v, alpha, beta=0.0):
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
    simple = {"hard_sigmoid": lambda: np.clip(alpha * v + beta, 0, 1), "affine": lambda: alpha * v + beta,
              "thresholded_relu": lambda: np.where(v > alpha, v, 0.0),
              "scaled_tanh": lambda: alpha * np.tanh(beta * v), "softsign": lambda: v / (1 + np.abs(v)),
              "exp": lambda: np.exp(v), "log": lambda: np.log(v), "sqrt": lambda: np.sqrt(v),
              "neg": lambda: -v, "abs": lambda: np.abs(v), "reciprocal": lambda: 1 / v,
              "erf": lambda: np.vectorize(math.erf)(v), "clip": lambda: np.clip(v, alpha, beta),
              "pow": lambda: np.power(v, alpha)}
    if kind in simple:
        return simple[kind]()
    if kind == "softmax":
        e = np.exp(v - v.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    if kind == "log_softmax":
        m = v.max(-1, keepdims=True)
        return v - m - np.log(np.exp(v - m).sum(-1, keepdims=True))
    raise ValueError(kind)


def _gate(spec, v):
    k, a, b = spec["kind"], spec.get("alpha", 0.0), spec.get("beta", 0.0)
    return {"sigmoid": lambda: _sig(v), "tanh": lambda: np.tanh(v), "relu": lambda: np.maximum(v, 0),
            "affine": lambda: a * v + b, "leaky_relu": lambda: np.where(v >= 0, v, a * v),
            "thresholded_relu": lambda: np.where(v > a, v, 0.0),
            "scaled_tanh": lambda: a * np.tanh(b * v),
            "hard_sigmoid": lambda: np.clip(a * v + b, 0, 1),
            "elu": lambda: np.where(v >= 0, v, a * (np.exp(np.minimum(v, 0)) - 1)),
            "softsign": lambda: v / (1 + np.abs(v)),
            "softplus": lambda: np.log1p(np.exp(v))}[k]()


def _w(node, role):
    w = node["weights"].get(role)
    return None if w is None else np.asarray(w, np.float64)


def run_reference(doc: dict, weights: dict, X: np.ndarray, length: int | None = None) -> np.ndarray:
    """doc: graph document; weights: tensor name -> array; X (T, I) -> (T, sum of outputs).
    `length`: recurrent layers run only the first `length` steps and output 0 after."""
    vals = {doc["inputs"][0]["name"]: np.asarray(X, np.float64)}
    T_all = X.shape[0]
    T = T_all if length is None else length
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
            acts = a.get("activations")
            clip = a.get("clip")
            cl = (lambda v: np.clip(v, -clip, clip)) if clip else (lambda v: v)
            general = bool(acts or clip or a.get("input_forget") or "peephole" in nd.get("weights", {}))
            if op == "RNN" and not acts:
                acts = [{"kind": a.get("nonlinearity", "tanh")}]
            if op == "LSTM" and not acts:
                acts = [{"kind": "sigmoid"}, {"kind": "tanh"}, {"kind": "tanh"}]
            if op == "GRU" and not acts:
                acts = [{"kind": "sigmoid"}, {"kind": "tanh"}]
            order = range(T - 1, -1, -1) if a.get("reverse") else range(T)
            Wih, Whh = _w(node, "W_ih"), _w(node, "W_hh")
            if op == "LSTM":
                P = a.get("proj_size", 0)
                R = P or H
                b = _w(node, "bias") if _w(node, "bias") is not None else np.zeros(4 * H)
                h = _w(node, "h0") if _w(node, "h0") is not None else np.zeros(R)
                c = _w(node, "c0") if _w(node, "c0") is not None else np.zeros(H)
                y = np.zeros((T_all, R))
                cells = np.zeros((T_all, H))
                p = _w(node, "peephole")
                for t in order:
                    g = x[t] @ Wih + h @ Whh + b
                    if not general:
                        i, f, gg, o = _sig(g[:H]), _sig(g[H:2 * H]), np.tanh(g[2 * H:3 * H]), _sig(g[3 * H:])
                        c = f * c + i * gg
                        h = o * np.tanh(c)
                    else:
                        gi, gf, gg, go = g[:H], g[H:2 * H], g[2 * H:3 * H], g[3 * H:]
                        if p is not None:
                            gi, gf = gi + p[:H] * c, gf + p[H:2 * H] * c
                        i = _gate(acts[0], cl(gi))
                        f = 1 - i if a.get("input_forget") else _gate(acts[0], cl(gf))
                        c = f * c + i * _gate(acts[1], cl(gg))
                        if p is not None:
                            go = go + p[2 * H:] * c
                        h = _gate(acts[0], cl(go)) * _gate(acts[2], c)
                    if a.get("output_cell"):
                        cells[t] = c
                    if P:
                        h = h @ _w(node, "W_hr")
                    y[t] = h
                if a.get("output_cell"):
                    y = np.concatenate([y, cells], -1)
            elif op == "GRU":
                bi = _w(node, "b_ih") if _w(node, "b_ih") is not None else np.zeros(3 * H)
                bh = _w(node, "b_hh") if _w(node, "b_hh") is not None else np.zeros(3 * H)
                h = _w(node, "h0") if _w(node, "h0") is not None else np.zeros(H)
                lbr = a.get("linear_before_reset", True)
                y = np.zeros((T_all, H))
                fa, ga = (lambda v: _gate(acts[0], cl(v))), (lambda v: _gate(acts[1], cl(v)))
                for t in order:
                    gx = x[t] @ Wih + bi
                    r = fa(gx[:H] + h @ Whh[:, :H] + bh[:H])
                    z = fa(gx[H:2 * H] + h @ Whh[:, H:2 * H] + bh[H:2 * H])
                    if lbr:
                        n = ga(gx[2 * H:] + r * (h @ Whh[:, 2 * H:] + bh[2 * H:]))
                    else:
                        n = ga(gx[2 * H:] + (r * h) @ Whh[:, 2 * H:] + bh[2 * H:])
                    h = (1 - z) * n + z * h
                    y[t] = h
            else:
                b = _w(node, "bias") if _w(node, "bias") is not None else np.zeros(H)
                h = _w(node, "h0") if _w(node, "h0") is not None else np.zeros(H)
                y = np.zeros((T_all, H))
                for t in order:
                    h = _gate(acts[0], cl(x[t] @ Wih + h @ Whh + b))
                    y[t] = h
        elif op == "Activation":
            alpha = a.get("alpha", {"leaky_relu": 0.01, "elu": 1.0}.get(a["kind"], 0.0))
            group = a.get("axis_size", x.shape[-1])
            xs = x.reshape(x.shape[0], -1, group)
            y = _act(a["kind"], xs, alpha, a.get("beta", 0.0)).reshape(x.shape)
        elif op == "LayerNorm":
            xs = x.reshape(x.shape[0], a.get("rows", 1), a["size"])
            mu = xs.mean(-1, keepdims=True)
            var = ((xs - mu) ** 2).mean(-1, keepdims=True)
            y = (xs - mu) / np.sqrt(var + a.get("eps", 1e-5))
            if _w(node, "weight") is not None:
                y = y * _w(node, "weight")
            if _w(node, "bias") is not None:
                y = y + _w(node, "bias")
            y = y.reshape(x.shape)
        elif op == "FirstStep":
            y = np.broadcast_to(x[:1], x.shape).copy()
        elif op == "Scale":
            y = x * (_w(node, "scale") if _w(node, "scale") is not None else 1)
            y = y + (_w(node, "shift") if _w(node, "shift") is not None else 0)
        elif op == "Binary":
            u, v = ins
            k = a["kind"]
            y = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
                 "max": np.maximum, "min": np.minimum, "pow": np.power}[k](u, v)
        elif op == "Gather":
            idx = _w(node, "index").astype(int)
            y = np.where(idx >= 0, x[:, np.maximum(idx, 0)], 0.0)
        elif op == "Conv1d":
            C, L, M, K = a["in_channels"], a["in_length"], a["out_channels"], a["kernel_size"]
            s_, d, g = a.get("stride", 1), a.get("dilation", 1), a.get("groups", 1)
            xp = np.pad(x.reshape(-1, C, L), ((0, 0), (0, 0), (a.get("pad_left", 0), a.get("pad_right", 0))))
            W = _w(node, "W")
            Lo = (xp.shape[2] - d * (K - 1) - 1) // s_ + 1
            y = np.zeros((x.shape[0], M, Lo))
            cg, mg = C // g, M // g
            for m in range(M):
                gi = m // mg
                for t in range(Lo):
                    patch = xp[:, gi * cg:(gi + 1) * cg, t * s_: t * s_ + d * (K - 1) + 1: d]
                    y[:, m, t] = (patch * W[m]).sum((1, 2))
                if _w(node, "bias") is not None:
                    y[:, m] += _w(node, "bias")[m]
            y = y.reshape(x.shape[0], -1)
        elif op == "Reduce":
            xs = x.reshape(x.shape[0], a["outer"], a["axis"], a["inner"])
            y = {"mean": xs.mean(2), "sum": xs.sum(2), "max": xs.max(2), "min": xs.min(2)}[a["kind"]]
            y = y.reshape(x.shape[0], -1)
        elif op == "Embedding":
            y = _w(node, "table")[x.astype(int)].reshape(x.shape[0], -1)
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
