"""Time reversal with Slice(step=-1) over the time axis around recurrent ops: how
bidirectional layers are built by hand (madmom's exporter: reverse the input, a forward
LSTM, reverse its output back, concatenate with the forward layer). The converter reads a
recurrent op on a reversed input as running the other way in time (an IR `reverse`
layer). Every model is compared with onnxruntime (`check`: whole sequence, and streamed
where it streams; max abs error 1e-5 on unit-scale data, fp32)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from converters import ConversionError, convert_onnx
from lstm_infer.errors import NotStreamableError

from onnx_helpers import check, init, make_model, rnd, vi

N = helper.make_node
RNG = np.random.default_rng(5)
I, H, O = 3, 4, 2
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
I64_MIN = -2 ** 63


def i64(name, vals):
    return init(name, np.asarray(vals, np.int64))


def rec_inits(op, prefix, n_in, peep=False):
    G = GATES[op]
    out = [init(prefix + "W", rnd(RNG, 1, G * H, n_in, scale=0.5)),
           init(prefix + "R", rnd(RNG, 1, G * H, H, scale=0.5)),
           init(prefix + "B", rnd(RNG, 1, 2 * G * H, scale=0.5))]
    if peep:
        out.append(init(prefix + "P", rnd(RNG, 1, 3 * H, scale=0.5)))
    return out


def rec_node(op, x, prefix, outs, **attrs):
    ins = [x, prefix + "W", prefix + "R", prefix + "B"]
    if attrs.pop("peep", False):
        ins += ["", "", "", prefix + "P"]
    if op == "GRU":
        attrs.setdefault("linear_before_reset", 1)
    return N(op, ins, outs, hidden_size=H, name=prefix + op.lower(), **attrs)


def rev(x, y, axis=0, name=None):
    """x[::-1] along `axis` as exporters write it: Slice(starts=-1, ends=INT64_MIN, steps=-1)."""
    return N("Slice", [x, "rs", "re", f"ra{axis}", "rst"], [y], name=name or f"rev_{y}")


REV_INITS = [i64("rs", [-1]), i64("re", [I64_MIN]), i64("ra0", [0]), i64("ra1", [1]),
             i64("rst", [-1])]


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_hand_built_bidirectional_layer_with_batch(tmp_path, op):
    """x (T, B, I): forward op on x, forward op on x[::-1] reversed back, Concat, MatMul."""
    peep = op == "LSTM"
    nodes = [rec_node(op, "x", "f_", ["yf"], peep=peep), N("Squeeze", ["yf", "ax1"], ["hf"]),
             rev("x", "xr"), rec_node(op, "xr", "b_", ["yb"], peep=peep),
             N("Squeeze", ["yb", "ax1"], ["hbr"]), rev("hbr", "hb"),
             N("Concat", ["hf", "hb"], ["h"], axis=2), N("MatMul", ["h", "Wd"], ["out"])]
    inits = (rec_inits(op, "f_", I, peep) + rec_inits(op, "b_", I, peep) + REV_INITS
             + [i64("ax1", [1]), init("Wd", rnd(RNG, 2 * H, O))])
    model = make_model(nodes, [vi("x", ["seq", "batch", I])], [vi("out", None)], inits, opset=13)
    m, v, _ = check(model, tmp_path, stream=False)
    recs = [n for n in m.graph.nodes if n.op == op]
    assert [bool(n.attrs["reverse"]) for n in recs] == [False, True]
    with pytest.raises(NotStreamableError, match="backwards in time"):
        m.stream()


def test_two_reversed_layers_stacked_and_per_step_ops_in_reverse_time(tmp_path):
    """Per-step ops (Relu, MatMul) act on reversed values; a second layer reads them still
    reversed; only the output is reversed back. Also the batch-first layout."""
    nodes = [N("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),            # (T, B, I)
             rev("xt", "xr"), N("Relu", ["xr"], ["xrr"]), N("MatMul", ["xrr", "Wp"], ["xp"]),
             rec_node("GRU", "xp", "a_", ["ya"]), N("Squeeze", ["ya", "ax1"], ["ha"]),
             N("Transpose", ["ha"], ["hab"], perm=[1, 0, 2]),          # (B, T~, H)
             rec_node("LSTM", "hab", "b_", ["yb"], layout=1),         # Y (B, T~, 1, H)
             N("Squeeze", ["yb", "ax2"], ["hb"]), rev("hb", "out", axis=1)]
    inits = (rec_inits("GRU", "a_", I) + rec_inits("LSTM", "b_", H) + REV_INITS
             + [i64("ax1", [1]), i64("ax2", [2]), init("Wp", rnd(RNG, I, I))])
    model = make_model(nodes, [vi("x", ["batch", "seq", I])], [vi("out", None)], inits, opset=14)
    m, _, _ = check(model, tmp_path, stream=False)
    assert all(n.attrs["reverse"] for n in m.graph.nodes if n.op in ("GRU", "LSTM"))


def test_reverse_direction_on_reversed_input_is_forward_and_streams(tmp_path):
    """Reversing twice is the identity: direction=reverse on x[::-1], reversed back, is a
    forward layer, so the model streams."""
    nodes = [rev("x", "xr"), rec_node("GRU", "xr", "g_", ["y"], direction="reverse"),
             N("Squeeze", ["y", "ax1"], ["ys"]), rev("ys", "out")]
    model = make_model(nodes, [vi("x", ["seq", "batch", I])], [vi("out", None)],
                       rec_inits("GRU", "g_", I) + REV_INITS + [i64("ax1", [1])], opset=13)
    m, _, _ = check(model, tmp_path, stream=True)
    assert not m.graph.nodes[0].attrs["reverse"]


def test_final_state_of_a_reversed_layer(tmp_path):
    """Y_h of a forward RNN on x[::-1] is the state after step 0 of x: read like a reverse
    layer's final state (FirstStep), run() only."""
    nodes = [rev("x", "xr"), rec_node("RNN", "xr", "r_", ["", "yh"]),
             N("Squeeze", ["yh", "ax0"], ["h"]), N("MatMul", ["h", "Wd"], ["out"])]
    model = make_model(nodes, [vi("x", ["seq", "batch", I])], [vi("out", None)],
                       rec_inits("RNN", "r_", I) + REV_INITS + [i64("ax0", [0]),
                                                                init("Wd", rnd(RNG, H, O))],
                       opset=13)
    m, _, _ = check(model, tmp_path, stream=False)
    assert "FirstStep" in [n.op for n in m.graph.nodes]


def test_bidirectional_without_batch_axis_and_states_as_inputs(tmp_path):
    """madmom's layout: x (T, F) without a batch axis, dims undeclared, each layer's h/c as
    1-D graph inputs and outputs, paired automatically (the engine keeps them)."""
    nodes, inputs, outputs = [N("Unsqueeze", ["x", "ax1"], ["xf"])], [vi("x", ["d0", "d1"])], []
    for tag, src in (("f", "x"), ("b", "xr")):
        nodes += [N("Unsqueeze", [f"h_{tag}", "ax01"], [f"h0_{tag}"]),
                  N("Unsqueeze", [f"c_{tag}", "ax01"], [f"c0_{tag}"])]
        inputs += [vi(f"h_{tag}", [H]), vi(f"c_{tag}", [H])]
        outputs += [vi(f"hn_{tag}", [H]), vi(f"cn_{tag}", [H])]
    nodes.insert(1, rev("x", "xr0"))
    nodes.insert(2, N("Unsqueeze", ["xr0", "ax1"], ["xr"]))
    for tag, src in (("f", "xf"), ("b", "xr")):
        nodes += [N("LSTM", [src, f"{tag}_W", f"{tag}_R", f"{tag}_B", "", f"h0_{tag}", f"c0_{tag}",
                             f"{tag}_P"], [f"y_{tag}", f"yh_{tag}", f"yc_{tag}"], hidden_size=H,
                    name=f"lstm_{tag}"),
                  N("Squeeze", [f"y_{tag}", "ax12"], [f"s_{tag}"]),
                  N("Squeeze", [f"yh_{tag}", "ax01"], [f"hn_{tag}"]),
                  N("Squeeze", [f"yc_{tag}", "ax01"], [f"cn_{tag}"])]
    nodes += [rev("s_b", "s_b_fwd"), N("Concat", ["s_f", "s_b_fwd"], ["cat"], axis=1),
              N("MatMul", ["cat", "Wd"], ["mm"]), N("Sigmoid", ["mm"], ["out"])]
    inits = (rec_inits("LSTM", "f_", I, True) + rec_inits("LSTM", "b_", I, True) + REV_INITS
             + [i64("ax1", [1]), i64("ax01", [0, 1]), i64("ax12", [1, 2]),
                init("Wd", rnd(RNG, 2 * H, 1))])
    model = make_model(nodes, inputs, [vi("out", ["d0", 1])] + outputs, inits, opset=18)
    m, v, rep = check(model, tmp_path, stream=False)
    pairs = {(s["input"], s["output"]) for s in m.provenance["onnx"]["state"]}
    assert pairs == {("h_f", "hn_f"), ("c_f", "cn_f"), ("h_b", "hn_b"), ("c_b", "cn_b")}
    assert m.output_names == ["out"] and m.input_size == I
    assert [n.op for n in m.graph.nodes] == ["LSTM", "LSTM", "Concat", "Linear", "Activation"]
    assert any("taken as 3 features" in w for w in rep.warnings)


def test_output_left_reversed_is_refused(tmp_path):
    nodes = [rev("x", "xr"), rec_node("LSTM", "xr", "l_", ["y"])]
    model = make_model(nodes, [vi("x", ["seq", "batch", I])], [vi("y", None)],
                       rec_inits("LSTM", "l_", I) + REV_INITS, opset=13)
    with pytest.raises(ConversionError, match="graph output 'y'.*reverse time order"):
        convert_onnx(model, tmp_path / "a.lstm", verify=False)


def test_mixing_reversed_and_ordered_values_is_refused(tmp_path):
    nodes = [rev("x", "xr"), N("Add", ["x", "xr"], ["y"], name="the_add")]
    model = make_model(nodes, [vi("x", ["seq", "batch", I])], [vi("y", None)], REV_INITS, opset=13)
    with pytest.raises(ConversionError, match=r"node 'the_add' \(Add\).*reversed"):
        convert_onnx(model, tmp_path / "b.lstm", verify=False)


def test_reversed_input_with_sequence_lens_is_refused(tmp_path):
    nodes = [rev("x", "xr"), N("GRU", ["xr", "g_W", "g_R", "g_B", "lens"], ["y"], hidden_size=H,
                                name="the_gru")]
    model = make_model(nodes, [vi("x", ["seq", "batch", I]), vi("lens", ["batch"], TensorProto.INT32)],
                       [vi("y", None)], rec_inits("GRU", "g_", I) + REV_INITS, opset=13)
    with pytest.raises(ConversionError, match=r"the_gru.*sequence_lens.*reversed"):
        convert_onnx(model, tmp_path / "c.lstm", verify=False)
