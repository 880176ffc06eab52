"""ONNX LSTM / GRU / RNN one-node models vs onnxruntime: every attribute and optional input
(directions, layouts, activations with alpha/beta, clip, input_forget, peepholes, biases,
initial states, sequence_lens, output subsets, linear_before_reset, opsets 7-22)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import lstm_infer
from converters import ConversionError
from converters.onnx_import import convert_onnx
from converters.onnx_verify import _session, _to_ours

from onnx_helpers import check, init, make_model, rnd, vi

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def rec_model(op="LSTM", I=3, H=4, direction="forward", layout=0, opset=22, bias=True, peep=False,
              init_state="none", seq_lens=False, outputs=("Y", "Y_h"), static=None, seed=0, **attrs):
    rng = np.random.default_rng(seed)
    D = 2 if direction == "bidirectional" else 1
    G = GATES[op]
    T_, B_ = static if static else ("seq", "batch")
    x_dims = [T_, B_, I] if layout == 0 else [B_, T_, I]
    inputs = [vi("X", x_dims)]
    inits = [init("W", rnd(rng, D, G * H, I, scale=0.5)), init("R", rnd(rng, D, G * H, H, scale=0.5))]
    names = ["X", "W", "R"]
    names.append("B" if bias else "")
    if bias:
        inits.append(init("B", rnd(rng, D, 2 * G * H, scale=0.5)))
    names.append("seq_lens" if seq_lens else "")
    if seq_lens:
        inputs.append(vi("seq_lens", [B_], TensorProto.INT32))
    st_dims = [D, B_, H] if layout == 0 else [B_, D, H]
    roles = ["initial_h"] + (["initial_c"] if op == "LSTM" else [])
    for r in roles:
        if init_state == "input":
            inputs.append(vi(r, st_dims))
            names.append(r)
        elif init_state == "const":
            assert static
            v = rnd(rng, D, 1, H, scale=0.5).repeat(B_, axis=1)
            inits.append(init(r, v if layout == 0 else v.transpose(1, 0, 2)))
            names.append(r)
        else:
            names.append("")
    if peep:
        inits.append(init("P", rnd(rng, D, 3 * H, scale=0.5)))
        names.append("P")
    while names and names[-1] == "":
        names.pop()
    all_outs = ["Y", "Y_h", "Y_c"][:3 if op == "LSTM" else 2]
    outs = [o if o in outputs else "" for o in all_outs]
    while outs[-1] == "":
        outs.pop()
    if opset >= 14:
        attrs["layout"] = layout
    node = helper.make_node(op, names, outs, name=f"{op.lower()}_node", hidden_size=H,
                            direction=direction, **attrs)
    return make_model([node], inputs, [vi(o, None) for o in outs if o], inits, opset=opset)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
def test_directions_layouts(tmp_path, op, direction, layout):
    m, v, _ = check(rec_model(op, direction=direction, layout=layout, outputs=("Y", "Y_h")),
                    tmp_path, stream=direction == "forward")
    assert m.streamable == (direction == "forward")


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("opset", [7, 10, 14, 18, 22])
def test_opsets_and_no_bias(tmp_path, op, opset):
    check(rec_model(op, opset=opset, bias=False), tmp_path)
    check(rec_model(op, opset=opset, bias=True, outputs=("Y",)), tmp_path, name="b.lstm")


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("outputs", [("Y",), ("Y_h",), ("Y", "Y_h")])
def test_output_subsets(tmp_path, op, outputs):
    check(rec_model(op, outputs=outputs), tmp_path)


FUNCS = [("Sigmoid", [], []), ("Tanh", [], []), ("Relu", [], []), ("Affine", [0.7], [0.1]),
         ("LeakyRelu", [0.2], []), ("ThresholdedRelu", [0.3], []), ("ScaledTanh", [0.9], [1.1]),
         ("HardSigmoid", [0.3], [0.4]), ("Elu", [0.8], []), ("Softsign", [], []), ("Softplus", [], [])]


@pytest.mark.parametrize("func,alpha,beta", FUNCS, ids=[f[0] for f in FUNCS])
@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_activations(tmp_path, op, func, alpha, beta):
    """Each function in each activation slot of the op, with activation_alpha/beta."""
    n = {"LSTM": 3, "GRU": 2, "RNN": 1}[op]
    defaults = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}[op]
    for slot in range(n):
        acts = list(defaults)
        acts[slot] = func
        kw = {"activations": acts}
        if alpha:
            kw["activation_alpha"] = alpha
        if beta:
            kw["activation_beta"] = beta
        # unbounded functions: values grow without bound over long sequences, so fp32 is
        # compared at T=6 only (long_t=None)
        check(rec_model(op, clip=4.0, **kw), tmp_path, name=f"s{slot}.lstm", rel_tol=1e-6,
              long_t=None)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_bidirectional_activations_consume_alphas_in_order(tmp_path, op):
    n = {"LSTM": 3, "GRU": 2, "RNN": 1}[op]
    fw = ["HardSigmoid", "Tanh", "Tanh"][:n] if op != "RNN" else ["LeakyRelu"]
    bw = ["Sigmoid", "ScaledTanh", "Elu"][:n] if op != "RNN" else ["Elu"]
    check(rec_model(op, direction="bidirectional", activations=fw + bw,
                    activation_alpha=[0.25, 0.9, 0.5], activation_beta=[0.45, 1.2]),
          tmp_path, stream=False, long_t=None)  # unbounded functions: T=6 only (see above)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_clip(tmp_path, op, direction):
    check(rec_model(op, direction=direction, clip=0.3), tmp_path, stream=direction == "forward")


@pytest.mark.parametrize("peep", [False, True])
@pytest.mark.parametrize("input_forget", [0, 1])
def test_lstm_peepholes_input_forget(tmp_path, peep, input_forget):
    check(rec_model("LSTM", peep=peep, input_forget=input_forget), tmp_path)
    check(rec_model("LSTM", peep=peep, input_forget=input_forget, direction="bidirectional",
                    clip=0.6), tmp_path, stream=False, name="b.lstm")


@pytest.mark.parametrize("lbr", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_gru_linear_before_reset(tmp_path, lbr, direction):
    check(rec_model("GRU", linear_before_reset=lbr, direction=direction), tmp_path,
          stream=direction == "forward")


def test_gru_pytorch_lbr0_warns(tmp_path):
    m = rec_model("GRU", linear_before_reset=0)
    m.producer_name = "pytorch"
    rep = convert_onnx(m, tmp_path / "g.lstm", verify=False)
    assert any("linear_before_reset" in w for w in rep.warnings)
    m2 = rec_model("GRU", linear_before_reset=1)
    m2.producer_name = "pytorch"
    assert not convert_onnx(m2, tmp_path / "g2.lstm", verify=False).warnings


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("layout", [0, 1])
def test_initial_state_initializer(tmp_path, op, layout):
    check(rec_model(op, init_state="const", static=(6, 2), layout=layout, peep=op == "LSTM"),
          tmp_path)


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("layout", [0, 1])
def test_initial_state_graph_input_paired(tmp_path, op, layout):
    outs = ("Y", "Y_h", "Y_c") if op == "LSTM" else ("Y", "Y_h")
    model = rec_model(op, init_state="input", layout=layout, outputs=outs)
    m, v, _ = check(model, tmp_path)
    meta = m.provenance["onnx"]
    assert {(s["input"], s["output"]) for s in meta["state"]} == (
        {("initial_h", "Y_h"), ("initial_c", "Y_c")} if op == "LSTM" else {("initial_h", "Y_h")})
    assert m.output_names == ["Y"]
    # a non-zero initial state set through set_state equals onnxruntime fed with it
    rng = np.random.default_rng(3)
    T, B, H = 5, 2, 4
    X = rnd(rng, T, B, 3) if layout == 0 else rnd(rng, B, T, 3)
    h0 = {r: rnd(rng, *( (1, B, H) if layout == 0 else (B, 1, H))) for r in
          (["initial_h", "initial_c"] if op == "LSTM" else ["initial_h"])}
    ref = _session(model).run(None, {"X": X, **h0})
    Xo = _to_ours(X, ["T", "B", 3] if layout == 0 else ["B", "T", 3])
    for b in range(B):
        s = m.stream()
        st = {}
        for e in meta["state"]:
            arr = h0[e["input"]]
            vals = arr[:, b, :] if layout == 0 else arr[b]
            for (name, j), val in zip(e["elements"], vals.reshape(-1)):
                st.setdefault(name, np.zeros(H, np.float32))[j] = val
        s.set_state(st)
        y = s.step_many(Xo[b])
        want = ref[0][:, 0, b, :] if layout == 0 else ref[0][b, :, 0, :]
        assert np.abs(y - want).max() <= 1e-5


def test_unpaired_state_input_is_explained(tmp_path):
    model = rec_model("GRU", init_state="input", outputs=("Y",))
    with pytest.raises(ConversionError, match=r"--state initial_h=OUTPUT.*--fix initial_h=0"):
        convert_onnx(model, tmp_path / "x.lstm", verify=False)
    check(model, tmp_path, fix={"initial_h": 0.0})


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_sequence_lens(tmp_path, op, direction):
    m, v, _ = check(rec_model(op, direction=direction, seq_lens=True, outputs=("Y", "Y_h")),
                    tmp_path, stream=direction == "forward")
    assert m.provenance["onnx"]["lengths_input"] == "seq_lens"


def test_static_shapes(tmp_path):
    check(rec_model("LSTM", static=(5, 1)), tmp_path)
    check(rec_model("GRU", static=(4, 3), layout=1), tmp_path, name="b.lstm")


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_lstm_y_c_without_initial_c(tmp_path, direction):
    """Y_c not paired with an input: the LSTM nodes output [h, c] per step (output_cell)."""
    check(rec_model("LSTM", direction=direction, outputs=("Y", "Y_h", "Y_c")), tmp_path,
          stream=direction == "forward")


def test_weights_as_graph_inputs_need_fix(tmp_path):
    model = rec_model("RNN")
    w = model.graph.initializer[0]
    from onnx import numpy_helper
    W = numpy_helper.to_array(w)
    del model.graph.initializer[0]
    model.graph.input.append(vi("W", list(W.shape)))
    with pytest.raises(ConversionError, match="fix"):
        convert_onnx(model, tmp_path / "x.lstm", verify=False)
    check(model, tmp_path, fix={"W": W})
