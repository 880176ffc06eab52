"""ConvLSTM (ops/conv_lstm.py) against an independent float64 numpy ConvLSTM (Keras
semantics, channels-last) with random weights: several geometries (strides, dilation,
asymmetric padding, 1-D frames, even kernels, filters past one 64-column panel), every
path (run, batched run, step, chunked step_many, streams, shaped and flat inputs), state
carried across calls, other activations, and malformed attributes/weights refused.
Tolerance 1e-5 max abs on unit-scale data (fp32 kernels vs a float64 reference)."""
import numpy as np
import pytest

import lstm_infer
from lstm_infer.builder import GraphBuilder
from lstm_infer.errors import ModelFormatError

TOL = 1e-5


def conv_cl(x, W, stride=(1, 1), dil=(1, 1), pads=(0, 0, 0, 0)):
    """float64 channels-last convolution: x (H, W, C), W (kh, kw, C, M), pads t, l, b, r."""
    kh, kw, _, M = W.shape
    pt, pl, pb, pr = pads
    xp = np.pad(x.astype(np.float64), ((pt, pb), (pl, pr), (0, 0)))
    Ho = (xp.shape[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    Wo = (xp.shape[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((Ho, Wo, M))
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dil[0], kx * dil[1]
            patch = xp[y0:y0 + (Ho - 1) * stride[0] + 1:stride[0],
                       x0:x0 + (Wo - 1) * stride[1] + 1:stride[1], :]
            out += patch @ W[ky, kx].astype(np.float64)
    return out


def _sig(v):
    return 1 / (1 + np.exp(-v))


ACTS = {"sigmoid": _sig, "tanh": np.tanh, "relu": lambda v: np.maximum(v, 0),
        "hard_sigmoid": lambda v: np.clip(v / 6 + 0.5, 0, 1)}


def reference(X, Wx, Wh, bias, stride=(1, 1), dil=(1, 1), pads=(0, 0, 0, 0), h=None, c=None,
              acts=("sigmoid", "tanh", "tanh")):
    """X (T, H, W, C) -> (T, Ho, Wo, F) and the final (h, c); Keras gate order i, f, c, o;
    recurrent convolution 'same' (top/left (k-1)//2), stride 1."""
    kh, kw, _, M = Wx.shape
    F = M // 4
    fa, ga, ha = (ACTS[a] for a in acts)
    rp = ((kh - 1) // 2, (kw - 1) // 2, kh - 1 - (kh - 1) // 2, kw - 1 - (kw - 1) // 2)
    outs = []
    for x in X:
        zx = conv_cl(x, Wx, stride, dil, pads)
        if h is None:
            h = np.zeros(zx.shape[:2] + (F,))
            c = np.zeros_like(h)
        z = zx + conv_cl(h, Wh, pads=rp) + (0 if bias is None else bias)
        c = fa(z[..., F:2 * F]) * c + fa(z[..., :F]) * ga(z[..., 2 * F:3 * F])
        h = fa(z[..., 3 * F:]) * ha(c)
        outs.append(h)
    return np.array(outs), h, c


def build(tmp_path, H, W, C, F, k, stride=(1, 1), dil=(1, 1), pads=(0, 0, 0, 0), bias=True,
          seed=0, acts=None, init_state=False):
    rng = np.random.default_rng(seed)
    kh, kw = k
    w = {"W_x": rng.uniform(-0.3, 0.3, (kh, kw, C, 4 * F)).astype(np.float32),
         "W_h": rng.uniform(-0.3, 0.3, (kh, kw, F, 4 * F)).astype(np.float32),
         "bias": rng.uniform(-0.3, 0.3, 4 * F).astype(np.float32) if bias else None}
    attrs = {"in_height": H, "in_width": W, "in_channels": C, "filters": F, "kernel_size": [kh, kw],
             "strides": list(stride), "dilation": list(dil), "pads": list(pads)}
    if acts:
        attrs["activations"] = [{"kind": a} for a in acts]
    b = GraphBuilder("x", H * W * C, shape=(H, W, C))
    Ho = (H + pads[0] + pads[2] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    Wo = (W + pads[1] + pads[3] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    if init_state:
        w["h0"] = rng.uniform(-0.5, 0.5, Ho * Wo * F).astype(np.float32)
        w["c0"] = rng.uniform(-0.5, 0.5, Ho * Wo * F).astype(np.float32)
    b.output(b.add("ConvLSTM", "cl", ["x"], attrs, w), shape=(Ho, Wo, F))
    path = tmp_path / "convlstm.lstm"
    b.save(path)
    return lstm_infer.load(path), w


GEOMETRIES = [
    dict(H=5, W=6, C=2, F=3, k=(3, 3), pads=(1, 1, 1, 1)),                 # 'same'
    dict(H=7, W=6, C=3, F=5, k=(3, 2), stride=(2, 1), pads=(1, 0, 1, 1)),  # strided, asymmetric
    dict(H=6, W=9, C=2, F=17, k=(2, 3), dil=(2, 1), pads=(1, 1, 0, 1)),    # 68 gates: 2 panels
    dict(H=1, W=11, C=4, F=4, k=(1, 3), pads=(0, 1, 0, 1)),                # a 1-D frame
    dict(H=6, W=7, C=1, F=2, k=(3, 3)),                                    # 'valid'
    dict(H=9, W=9, C=2, F=3, k=(3, 3), stride=(2, 3)),                     # valid, strided
    dict(H=6, W=9, C=2, F=17, k=(3, 3), pads=(2, 0, 1, 1)),  # Winograd: odd pads, 2 panels
    dict(H=7, W=10, C=1, F=16, k=(3, 3), pads=(1, 1, 1, 1)),  # Winograd, F = 16: whole tiles
    # run 4 pixels per cell loop (conv_cell.cell64), the partial last tile column one by one
]


@pytest.mark.parametrize("g", GEOMETRIES)
def test_convlstm_every_path(tmp_path, g):
    g = dict(g)
    H, W, C = g["H"], g["W"], g["C"]
    m, w = build(tmp_path, **g)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((2, 9, H, W, C)).astype(np.float32)
    ref = np.stack([reference(x, w["W_x"], w["W_h"], w["bias"], g.get("stride", (1, 1)),
                              g.get("dil", (1, 1)), g.get("pads", (0, 0, 0, 0)))[0] for x in X])
    assert m.input_shape == (H, W, C) and m.output_shape == ref.shape[2:]
    flat = ref.reshape(2, 9, -1)
    assert np.abs(m.run(X) - flat).max() < TOL                      # (B, T, *frame)
    assert np.abs(m.run(X[0].reshape(9, -1)) - flat[0]).max() < TOL  # flattened (T, I)
    s = m.stream()
    steps = np.array([s.step(x) for x in X[0]])                     # step(frame)
    assert np.abs(steps - flat[0]).max() < TOL
    np.testing.assert_array_equal(m.run(X[0]), steps)               # run() == step()
    s.reset()
    chunks = np.concatenate([s.step_many(X[1, :4]), s.step_many(X[1, 4:5].reshape(1, -1)),
                             s.step_many(X[1, 5:])])
    np.testing.assert_array_equal(chunks, m.run(X[1]))              # chunked == whole
    pool = m.streams(2)
    ys = np.array([pool.step(X[:, t]) for t in range(9)]).transpose(1, 0, 2)
    np.testing.assert_array_equal(ys, m.run(X))


def test_state_carried_and_initial_state(tmp_path):
    m, w = build(tmp_path, 6, 5, 2, 4, (3, 3), pads=(1, 1, 1, 1), init_state=True, seed=3)
    X = np.random.default_rng(2).standard_normal((12, 6, 5, 2)).astype(np.float32)
    h0, c0 = w["h0"].reshape(6, 5, 4), w["c0"].reshape(6, 5, 4)
    ref, h, c = reference(X, w["W_x"], w["W_h"], w["bias"], pads=(1, 1, 1, 1), h=h0, c=c0)
    s = m.stream()
    s.step_many(X[:5])
    saved = s.get_state()
    tail = s.step_many(X[5:])
    assert np.abs(tail - ref[5:].reshape(7, -1)).max() < TOL
    st = s.get_state()
    assert np.abs(st["cl.h"] - h.ravel()).max() < TOL and np.abs(st["cl.c"] - c.ravel()).max() < TOL
    s.set_state(saved)
    np.testing.assert_array_equal(s.step_many(X[5:]), tail)


def test_no_bias_and_other_activations(tmp_path):
    acts = ("hard_sigmoid", "relu", "tanh")
    m, w = build(tmp_path, 4, 5, 3, 3, (3, 3), pads=(1, 1, 1, 1), bias=False, acts=acts, seed=5)
    X = np.random.default_rng(4).standard_normal((6, 4, 5, 3)).astype(np.float32)
    ref = reference(X, w["W_x"], w["W_h"], None, pads=(1, 1, 1, 1), acts=acts)[0]
    a = {"kind": "hard_sigmoid", "alpha": 1 / 6, "beta": 0.5}
    assert m.graph.nodes[0].attrs["activations"][0]["kind"] == "hard_sigmoid"
    # the IR's hard_sigmoid takes alpha/beta: rebuild with Keras 3's slope
    m.graph.nodes[0].attrs["activations"][0] = a
    m2 = lstm_infer.Model(m.graph)
    assert np.abs(m2.run(X) - ref.reshape(6, -1)).max() < TOL


def test_reverse_runs_backwards(tmp_path):
    m, w = build(tmp_path, 4, 4, 1, 2, (3, 3), pads=(1, 1, 1, 1), seed=7)
    m.graph.nodes[0].attrs["reverse"] = True
    m2 = lstm_infer.Model(m.graph)
    X = np.random.default_rng(6).standard_normal((5, 4, 4, 1)).astype(np.float32)
    ref = reference(X[::-1], w["W_x"], w["W_h"], w["bias"], pads=(1, 1, 1, 1))[0][::-1]
    assert np.abs(m2.run(X) - ref.reshape(5, -1)).max() < TOL
    assert not m2.streamable


def test_wrong_shapes_are_clear_errors(tmp_path):
    m, _ = build(tmp_path, 4, 5, 2, 3, (3, 3), pads=(1, 1, 1, 1))
    with pytest.raises(ValueError, match=r"\(T, 4, 5, 2\)"):
        m.run(np.zeros((3, 5, 4, 2), np.float32))
    with pytest.raises(ValueError, match=r"\(4, 5, 2\) or \(40,\)"):
        m.stream().step(np.zeros((4, 5, 3), np.float32))


def _doc(attrs, shapes, in_shape=None):
    tensors = {f"cl.{r}": np.zeros(s, np.float32) for r, s in shapes.items()}
    n = attrs["in_height"] * attrs["in_width"] * attrs["in_channels"]
    inp = {"name": "x", "size": n, **({"shape": in_shape} if in_shape else {})}
    doc = {"inputs": [inp], "outputs": [{"name": "y"}],
           "nodes": [{"name": "cl", "op": "ConvLSTM", "inputs": ["x"], "outputs": ["y"],
                      "attrs": attrs, "weights": {r: f"cl.{r}" for r in shapes}}]}
    return doc, tensors


BASE = {"in_height": 4, "in_width": 4, "in_channels": 2, "filters": 3, "kernel_size": [3, 3]}


@pytest.mark.parametrize("attrs,shapes,in_shape,match", [
    (BASE, {"W_x": (3, 3, 2, 12), "W_h": (3, 3, 3, 3)}, None, "W_h"),
    (BASE, {"W_x": (3, 3, 3, 12), "W_h": (3, 3, 3, 12)}, None, "W_x"),
    ({**BASE, "kernel_size": [5, 5]}, {"W_x": (5, 5, 2, 12), "W_h": (5, 5, 3, 12)}, None, "span"),
    ({**BASE, "pads": [1, 1]}, {"W_x": (3, 3, 2, 12), "W_h": (3, 3, 3, 12)}, None, "pads"),
    ({**BASE, "strides": [0, 1]}, {"W_x": (3, 3, 2, 12), "W_h": (3, 3, 3, 12)}, None, "strides"),
    (BASE, {"W_x": (3, 3, 2, 12), "W_h": (3, 3, 3, 12)}, [4, 4, 3], "shape"),
    ({**BASE, "activations": [{"kind": "tanh"}]}, {"W_x": (3, 3, 2, 12), "W_h": (3, 3, 3, 12)}, None,
     "activations"),
])
def test_malformed_nodes_are_refused(attrs, shapes, in_shape, match):
    from lstm_infer.graph import parse_graph
    doc, tensors = _doc(attrs, shapes, in_shape)
    with pytest.raises(ModelFormatError, match=match):
        parse_graph(doc, tensors)
