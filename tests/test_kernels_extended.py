"""Runtime semantics added for ONNX models (docs/FORMAT.md, "Extensions"), against the
float64 reference: gate activations, clip, coupled gates, peepholes, sequence lengths,
and the per-step ops Scale, Binary, Gather, Conv1d, Reduce, extra activations."""
import numpy as np
import pytest

import lstm_infer
from lstm_infer.builder import GraphBuilder
from lstm_infer.graph import parse_graph
from builders import _u, add_recurrent
from reference import run_reference
from test_kernels import TOL, _check_all_paths, _x

GATES = ["sigmoid", "tanh", "relu", "affine", "leaky_relu", "thresholded_relu", "scaled_tanh",
         "hard_sigmoid", "elu", "softsign", "softplus"]


def _spec(kind, k=0):
    return {"kind": kind, "alpha": [0.6, 0.9, 0.3][k % 3], "beta": [0.2, 0.7, 0.5][k % 3]}


def _single(tmp_path, op, I, H, attrs=None, peephole=False, seed=0, **kw):
    rng = np.random.default_rng(seed)
    b = GraphBuilder("x", I)
    v = add_recurrent(b, rng, op, "rec", "x", I, H, **kw)
    node = b.nodes[-1]
    node["attrs"].update(attrs or {})
    if peephole:
        b.tensors["rec.peephole"] = _u(rng, (3 * H,), 0.5)
        node["weights"]["peephole"] = "rec.peephole"
    b.sizes[v] = parse_graph(b.document(), b.tensors).sizes[v]  # attrs may change the size
    b.output(v)
    b.save(tmp_path / "m.lstm")
    return b


@pytest.mark.parametrize("case", [
    dict(attrs={"clip": 0.3}),
    dict(attrs={"input_forget": True}),
    dict(peephole=True),
    dict(peephole=True, attrs={"clip": 0.5, "input_forget": True}),
    dict(attrs={"activations": [_spec("hard_sigmoid", 0), _spec("scaled_tanh", 1), _spec("softsign", 2)]}),
    dict(attrs={"activations": [_spec("sigmoid"), _spec("relu"), _spec("affine", 1)]}, peephole=True),
    dict(attrs={"activations": [_spec("sigmoid"), _spec("tanh"), _spec("tanh")]}, proj=2),
    dict(attrs={"clip": 0.2}, reverse=True),
], ids=["clip", "input_forget", "peephole", "peep_clip_coupled", "acts", "acts_peep", "proj_general", "reverse"])
def test_lstm_onnx_semantics(tmp_path, case):
    b = _single(tmp_path, "LSTM", 4, 6, **case)
    m = lstm_infer.load(tmp_path / "m.lstm")
    X = _x(150, 4)
    ref = run_reference(b.document(), b.tensors, X)
    if m.streamable:
        _check_all_paths(m, ref, X)
    else:
        assert np.abs(m.run(X) - ref).max() <= TOL


@pytest.mark.parametrize("lbr", [True, False])
@pytest.mark.parametrize("attrs", [{"clip": 0.4},
                                   {"activations": [_spec("hard_sigmoid"), _spec("leaky_relu", 1)]},
                                   {"activations": [_spec("sigmoid"), _spec("elu", 2)], "clip": 1.0}],
                         ids=["clip", "acts", "acts_clip"])
def test_gru_onnx_semantics(tmp_path, lbr, attrs):
    b = _single(tmp_path, "GRU", 5, 7, attrs=attrs, lbr=lbr)
    X = _x(150, 5)
    _check_all_paths(lstm_infer.load(tmp_path / "m.lstm"), run_reference(b.document(), b.tensors, X), X)


@pytest.mark.parametrize("kind", GATES)
def test_rnn_every_gate_activation(tmp_path, kind):
    b = _single(tmp_path, "RNN", 3, 5, attrs={"activations": [_spec(kind, 1)], "clip": 3.0})
    X = _x(120, 3)
    _check_all_paths(lstm_infer.load(tmp_path / "m.lstm"), run_reference(b.document(), b.tensors, X), X)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("reverse", [False, True])
def test_sequence_lengths(tmp_path, op, reverse):
    b = _single(tmp_path, op, 3, 5, reverse=reverse, init_state=True)
    m = lstm_infer.load(tmp_path / "m.lstm")
    X = _x(40, 3, B=4)
    lengths = np.array([40, 17, 1, 0])
    Y = m.run(X, lengths=lengths)
    for i, n in enumerate(lengths):
        ref = run_reference(b.document(), b.tensors, X[i], length=int(n))
        assert np.abs(Y[i] - ref).max() <= TOL
        assert not Y[i, n:].any()
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, 40\]"):
        m.run(X, lengths=[41, 1, 1, 1])
    with pytest.raises(ValueError, match="4 integers"):
        m.run(X, lengths=[1, 2])


def _chain(tmp_path, build, I=12, T=60, positive=False, seed=5):
    rng = np.random.default_rng(seed)
    b = GraphBuilder("x", I)
    out = build(b, rng)
    b.output(out)
    b.save(tmp_path / "m.lstm")
    X = _x(T, I)
    if positive:
        X = np.abs(X) + 0.1
    ref = run_reference(b.document(), b.tensors, X)
    _check_all_paths(lstm_infer.load(tmp_path / "m.lstm"), ref, X)


@pytest.mark.parametrize("kind", ["hard_sigmoid", "affine", "thresholded_relu", "scaled_tanh",
                                  "softsign", "exp", "log", "sqrt", "neg", "abs", "reciprocal",
                                  "erf", "clip", "pow"])
def test_more_activations(tmp_path, kind):
    positive = kind in ("log", "sqrt", "reciprocal", "pow")
    _chain(tmp_path, lambda b, rng: b.add("Activation", "a", ["x"], {
        "kind": kind, "size": 12, "alpha": {"clip": -0.5, "pow": 1.7}.get(kind, 0.4), "beta": 0.8}),
        positive=positive)


def test_grouped_softmax_and_layernorm_rows(tmp_path):
    def build(b, rng):
        s = b.add("Activation", "sm", ["x"], {"kind": "log_softmax", "size": 12, "axis_size": 4})
        return b.add("LayerNorm", "ln", [s], {"size": 3, "rows": 4, "eps": 1e-5},
                     {"weight": _u(rng, (3,), 2), "bias": _u(rng, (3,), 1)})
    _chain(tmp_path, build)


@pytest.mark.parametrize("kind", ["add", "sub", "mul", "div", "max", "min", "pow"])
def test_binary_and_scale(tmp_path, kind):
    def build(b, rng):
        u = b.add("Scale", "s1", ["x"], {"size": 12}, {"scale": _u(rng, (12,), 2), "shift": _u(rng, (12,), 1)})
        v = b.add("Scale", "s2", ["x"], {"size": 12}, {"scale": _u(rng, (12,), 1)})
        if kind in ("div", "pow"):
            u = b.add("Activation", "pu", [u], {"kind": "abs", "size": 12})
            v = b.add("Activation", "av", [v], {"kind": "abs", "size": 12})
            v = b.add("Scale", "pv", [v], {"size": 12}, {"shift": np.full(12, 1.0)})
            if kind == "pow":  # keep u**v near unit scale, where the absolute tolerance applies
                u = b.add("Scale", "pu2", [u], {"size": 12}, {"scale": np.full(12, 0.3)})
        return b.add("Binary", "bin", [u, v], {"size": 12, "kind": kind})
    _chain(tmp_path, build, positive=kind in ("div", "pow"))


def test_gather_transpose_slice_pad(tmp_path):
    def build(b, rng):
        # (3, 4) -> transpose (4, 3), then take the first 2 rows and pad one zero each side
        tr = [c * 4 + r for r in range(4) for c in range(3)]
        idx = [-1] + tr[:6] + [-1]
        return b.add("Gather", "g", ["x"], {"in_size": 12, "out_size": 8}, {"index": np.array(idx, np.float32)})
    _chain(tmp_path, build)


@pytest.mark.parametrize("conv", [
    dict(C=2, L=6, M=3, K=3, stride=1, dilation=1, pl=1, pr=1, groups=1),
    dict(C=4, L=5, M=4, K=2, stride=2, dilation=1, pl=0, pr=1, groups=2),
    dict(C=3, L=8, M=6, K=3, stride=1, dilation=2, pl=2, pr=0, groups=3),
    dict(C=1, L=12, M=2, K=5, stride=3, dilation=1, pl=0, pr=0, groups=1),
])
def test_conv1d_front_end_then_lstm(tmp_path, conv):
    def build(b, rng):
        c = conv
        Lo = (c["L"] + c["pl"] + c["pr"] - c["dilation"] * (c["K"] - 1) - 1) // c["stride"] + 1
        y = b.add("Conv1d", "conv", ["x"], {
            "in_channels": c["C"], "in_length": c["L"], "out_channels": c["M"], "kernel_size": c["K"],
            "stride": c["stride"], "dilation": c["dilation"], "pad_left": c["pl"], "pad_right": c["pr"],
            "groups": c["groups"]}, {"W": _u(rng, (c["M"], c["C"] // c["groups"], c["K"]), 0.5),
                                     "bias": _u(rng, (c["M"],), 0.3)})
        r = b.add("Reduce", "pool", [y], {"kind": "mean", "outer": c["M"], "axis": Lo, "inner": 1})
        return add_recurrent(b, rng, "LSTM", "lstm", r, c["M"], 5)
    _chain(tmp_path, build, I=conv["C"] * conv["L"])


@pytest.mark.parametrize("kind", ["mean", "sum", "max", "min"])
def test_reduce(tmp_path, kind):
    _chain(tmp_path, lambda b, rng: b.add("Reduce", "r", ["x"], {"kind": kind, "outer": 2, "axis": 3, "inner": 2}))


def test_gather_index_out_of_range_is_rejected(tmp_path):
    b = GraphBuilder("x", 4)
    with pytest.raises(lstm_infer.ModelFormatError, match=r"integers in \[-1, 4\)"):
        b.add("Gather", "g", ["x"], {"in_size": 4, "out_size": 2}, {"index": np.array([0, 4], np.float32)})
    with pytest.raises(lstm_infer.ModelFormatError, match="divide"):
        b.add("Conv1d", "c", ["x"], {"in_channels": 2, "in_length": 2, "out_channels": 3,
                                     "kernel_size": 1, "groups": 2}, {"W": np.zeros((3, 1, 1))})


@pytest.mark.parametrize("opts", [dict(), dict(proj=3), dict(peephole=True, attrs={"clip": 0.5})],
                         ids=["plain", "proj", "general"])
def test_lstm_output_cell(tmp_path, opts):
    """output_cell: the node's per-step output is [h, c] (ONNX Y_c without a paired input)."""
    attrs = {**opts.pop("attrs", {}), "output_cell": True}
    b = _single(tmp_path, "LSTM", 4, 6, attrs=attrs, **opts)
    m = lstm_infer.load(tmp_path / "m.lstm")
    R = opts.get("proj") or 6
    assert m.output_size == R + 6
    X = _x(80, 4)
    _check_all_paths(m, run_reference(b.document(), b.tensors, X), X)
    s = m.stream()
    y = s.step_many(X)
    assert np.array_equal(y[-1, R:], s.get_state()["rec.c"])


def test_first_step_reads_a_reverse_layers_final_state(tmp_path):
    rng = np.random.default_rng(0)
    b = GraphBuilder("x", 3)
    fwd = add_recurrent(b, rng, "GRU", "fwd", "x", 3, 5)
    bwd = add_recurrent(b, rng, "GRU", "bwd", "x", 3, 5, reverse=True)
    last_bwd = b.add("FirstStep", "bwd_final", [bwd], {"size": 5})
    cat = b.add("Concat", "cat", [fwd, last_bwd], {"sizes": [5, 5]})
    b.output(b.add("Linear", "fc", [cat], {"in_features": 10, "out_features": 2}, {"W": _u(rng, (10, 2), 0.5)}))
    b.save(tmp_path / "m.lstm")
    m = lstm_infer.load(tmp_path / "m.lstm")
    X = _x(40, 3, B=2)
    Y = m.run(X)
    for i in range(2):
        assert np.abs(Y[i] - run_reference(b.document(), b.tensors, X[i])).max() <= TOL
    assert not m.streamable
    with pytest.raises(lstm_infer.NotStreamableError, match="bwd_final"):
        m.stream()
