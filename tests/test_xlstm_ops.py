"""MLSTM and SLSTM ops against float64 numpy references of the xLSTM layer formulas
(docs/FORMAT.md), with random weights, on every path: run(), step(), chunked step_many
(== whole), n streams, state read back; plus the specs' refusals of bad shapes.
Tolerance: max abs 1e-5 on unit-scale data (float32 kernels vs float64 reference)."""
import numpy as np
import pytest

import lstm_infer
from lstm_infer.builder import GraphBuilder
from lstm_infer.ops import mlstm, slstm

TOL = 1e-5


def _silu(v):
    return v / (1 + np.exp(-v))


def _logsig(v):
    return np.minimum(v, 0) - np.log1p(np.exp(-np.abs(v)))


def _conv(x, past, W, b, act=True):
    """(y, new past): causal depthwise conv over [past; x] (W (K, F)), SiLU'd."""
    frames = np.concatenate([past, x[None]]) if len(past) else x[None]
    y = (frames * W).sum(0) + (0 if b is None else b)
    return (_silu(y) if act else y), frames[1:]


def _headwise(x, W):
    G, B, _ = W.shape
    return np.einsum("gi,gio->go", x.reshape(G, B), W).reshape(-1)


def _head_norm(x, NH, w, eps):
    h = x.reshape(NH, -1)
    y = (h - h.mean(1, keepdims=True)) / np.sqrt(h.var(1, keepdims=True) + eps)
    y = y.reshape(-1)
    return y if w is None else y * w


def ref_mlstm(X, a, w):
    d, I, NH, K = a["size"], a["inner"], a["heads"], a["kernel"]
    DH = I // NH
    W = {k: (None if v is None else v.astype(np.float64)) for k, v in w.items()}
    C, n, m = np.zeros((NH, DH, DH)), np.zeros((NH, DH)), np.zeros(NH)
    past = np.zeros((K - 1, I))
    out = []
    for x in X.astype(np.float64):
        up = x @ W["W_up"]
        xm, z = up[:I], up[I:]
        xc, past = _conv(xm, past, W["conv_w"], W.get("conv_b"))
        q, k, v = (_headwise(src, W["W_qkv"][t]) for t, src in enumerate((xc, xc, xm)))
        g = np.concatenate([q, k, v]) @ W["W_if"] + W["b_if"]
        ig, fg = g[:NH], g[NH:]
        logf = _logsig(fg)
        mn = np.maximum(logf + m, ig)
        fa, ia = np.exp(logf + m - mn), np.exp(ig - mn)
        q, k, v = (u.reshape(NH, DH) for u in (q, k, v))
        ks = k / np.sqrt(DH)
        C = fa[:, None, None] * C + ia[:, None, None] * ks[:, :, None] * v[:, None, :]
        n = fa[:, None] * n + ia[:, None] * ks
        m = mn
        num = np.einsum("hi,hij->hj", q, C)
        den = np.maximum(np.abs((q * n).sum(1)), np.exp(-m)) + 1e-6
        h = _head_norm((num / den[:, None]).reshape(-1), NH, W.get("norm_w"), 1e-5)
        out.append(((h + W["skip"] * xc) * _silu(z)) @ W["W_down"])
    return np.array(out)


def ref_slstm(X, a, w):
    d, NH, K = a["size"], a["heads"], a["kernel"]
    DH = d // NH
    W = {k: (None if v is None else v.astype(np.float64)) for k, v in w.items()}
    y, c, n, m = (np.zeros(d) for _ in range(4))
    past = np.zeros((max(K - 1, 0), d))
    out = []
    for x in X.astype(np.float64):
        xc, past = _conv(x, past, W["conv_w"], W.get("conv_b")) if K else (x, past)
        raw = np.concatenate([_headwise(src, W["W_x"][g])
                              for g, src in enumerate((xc, xc, x, x))]) + W["bias"]
        ry = np.einsum("hk,hkc->hc", y.reshape(NH, DH), W["R"]).reshape(NH, 4, DH)
        raw = raw + ry.transpose(1, 0, 2).reshape(-1)
        i, f, zr, o = raw.reshape(4, d)
        logfm = m + _logsig(f)
        mn = i if (n == 0).all() else np.maximum(i, logfm)
        ig, fg = np.minimum(np.exp(i - mn), 1), np.minimum(np.exp(logfm - mn), 1)
        c = fg * c + ig * np.tanh(zr)
        n = fg * n + ig
        m = mn
        y = (1 / (1 + np.exp(-o))) * c / n
        out.append(_head_norm(y, NH, W.get("norm_w"), 1e-5))
    return np.array(out)


def _mlstm_case(rng, d, I, NH, bs, K):
    r = lambda *s: rng.standard_normal(s).astype(np.float32) * 0.4  # noqa: E731
    return ({"size": d, "inner": I, "heads": NH, "block": bs, "kernel": K},
            {"W_up": r(d, 2 * I), "conv_w": r(K, I), "conv_b": r(I), "W_qkv": r(3, I // bs, bs, bs),
             "W_if": r(3 * I, 2 * NH), "b_if": r(2 * NH), "norm_w": 1 + r(I), "skip": r(I),
             "W_down": r(I, d)})


def _slstm_case(rng, d, NH, K):
    r = lambda *s: rng.standard_normal(s).astype(np.float32) * 0.4  # noqa: E731
    w = {"W_x": r(4, NH, d // NH, d // NH), "R": r(NH, d // NH, 4 * d // NH), "bias": r(4 * d),
         "norm_w": 1 + r(d)}
    if K:
        w.update({"conv_w": r(K, d), "conv_b": r(d)})
    return {"size": d, "heads": NH, "kernel": K}, w


def _model(tmp_path, op, attrs, weights):
    b = GraphBuilder("x", attrs["size"])
    b.output(b.add(op, "cell", ["x"], attrs, weights))
    p = tmp_path / "op.lstm"
    b.save(p)
    return lstm_infer.load(p)


CASES = [("MLSTM", (8, 16, 2, 4, 4)), ("MLSTM", (6, 12, 3, 2, 1)), ("MLSTM", (4, 8, 1, 8, 2)),
         ("SLSTM", (8, 2, 4)), ("SLSTM", (8, 2, 0)), ("SLSTM", (4, 1, 2))]


@pytest.mark.parametrize("op,shape", CASES)
def test_every_path_against_reference(tmp_path, op, shape):
    rng = np.random.default_rng(sum(shape))
    attrs, w = _mlstm_case(rng, *shape) if op == "MLSTM" else _slstm_case(rng, *shape)
    ref_fn = ref_mlstm if op == "MLSTM" else ref_slstm
    m = _model(tmp_path, op, attrs, w)
    d = attrs["size"]
    X = rng.standard_normal((3, 40, d)).astype(np.float32)
    ref = np.stack([ref_fn(x, attrs, w) for x in X])
    assert np.abs(m.run(X) - ref).max() < TOL
    s = m.stream()
    got = [s.step(X[1, 0])] + [s.step_many(X[1, t:t + 7]) for t in range(1, 40, 7)]
    assert np.abs(np.concatenate([np.atleast_2d(g) for g in got]) - ref[1]).max() < TOL
    pool = m.streams(3)
    pooled = np.stack([pool.step(X[:, t]) for t in range(40)], 1)
    assert np.abs(pooled - ref).max() < TOL
    s.reset()
    s.step_many(X[1, :5])
    names = {"MLSTM": ("C", "n", "m"), "SLSTM": ("y", "c", "n", "m")}[op]
    state = s.get_state()
    assert all(np.any(state[f"cell.{k}"] != 0) for k in names)


def test_examples_build_and_run(tmp_path):
    rng = np.random.default_rng(0)
    for mod in (mlstm, slstm):
        attrs, w = mod.example(rng)
        m = _model(tmp_path, mod.OPS[0].name, attrs, w)
        assert m.run(np.ones((5, attrs["size"]), np.float32)).shape == (5, attrs["size"])


@pytest.mark.parametrize("op,attrs,bad", [
    ("MLSTM", {"size": 4, "inner": 8, "heads": 3, "block": 4, "kernel": 2}, None),
    ("MLSTM", {"size": 4, "inner": 8, "heads": 2, "block": 4, "kernel": 2}, ("W_qkv", (3, 2, 4, 3))),
    ("SLSTM", {"size": 6, "heads": 4, "kernel": 2}, None),
    ("SLSTM", {"size": 4, "heads": 2, "kernel": 2}, ("R", (2, 2, 4))),
])
def test_bad_shapes_are_refused(tmp_path, op, attrs, bad):
    rng = np.random.default_rng(1)
    if op == "MLSTM":
        _, w = _mlstm_case(rng, 4, 8, 2, 4, 2)
    else:
        _, w = _slstm_case(rng, 4, 2, 2)
    if bad:
        w[bad[0]] = np.zeros(bad[1], np.float32)
    with pytest.raises(Exception, match="must divide|shape"):
        _model(tmp_path, op, attrs, w)
