"""Hand-built whole graphs as other producers write them (tf2onnx/Keras style shape
bookkeeping, Y_h heads), state pairing (automatic, by hand, combined h/c tensors), the
public entry points and their error messages."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import lstm_infer
from converters import ConversionError, convert_file, convert_onnx, verify_file
from lstm_infer.errors import NotStreamableError

from onnx_helpers import check, init, make_model, rnd, vi

N = helper.make_node
RNG = np.random.default_rng(7)
I, H, O = 4, 5, 3


def i64(name, vals):
    return init(name, np.asarray(vals, np.int64))


def lstm_weights(D=1, G=4, prefix=""):
    return [init(prefix + "W", rnd(RNG, D, G * H, I, scale=0.5)),
            init(prefix + "R", rnd(RNG, D, G * H, H, scale=0.5)),
            init(prefix + "B", rnd(RNG, D, 2 * G * H, scale=0.5))]


def tf2onnx_style(return_sequences: bool):
    """Keras LSTM as tf2onnx writes it: batch-major input transposed, zero initial states
    built from the runtime batch size (Shape/Gather/Unsqueeze/Concat/ConstantOfShape)."""
    zero = helper.make_tensor("z", TensorProto.FLOAT, [1], [0.0])
    nodes = [N("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
             N("Shape", ["x"], ["sh"]), N("Gather", ["sh", "zero_i"], ["bsz"], axis=0),
             N("Unsqueeze", ["bsz", "ax0"], ["bsz1"]),
             N("Concat", ["one", "bsz1", "hid"], ["st_shape"], axis=0),
             N("ConstantOfShape", ["st_shape"], ["h0"], value=zero),
             N("LSTM", ["xt", "W", "R", "B", "", "h0", "h0"], ["Y", "Y_h", "Y_c"], hidden_size=H)]
    if return_sequences:
        nodes += [N("Squeeze", ["Y", "ax1"], ["ys"]), N("Transpose", ["ys"], ["yb"], perm=[1, 0, 2]),
                  N("MatMul", ["yb", "Wd"], ["d"]), N("Add", ["d", "bd"], ["out"])]
    else:
        nodes += [N("Squeeze", ["Y_h", "ax0"], ["hs"]), N("MatMul", ["hs", "Wd"], ["d"]),
                  N("Add", ["d", "bd"], ["a"]), N("Softmax", ["a"], ["out"], axis=-1)]
    inits = lstm_weights() + [i64("zero_i", 0), i64("ax0", [0]), i64("ax1", [1]), i64("one", [1]),
                              i64("hid", [H]), init("Wd", rnd(RNG, H, O)), init("bd", rnd(RNG, O))]
    return make_model(nodes, [vi("x", ["unk__1", "unk__2", I])], [vi("out", None)], inits, opset=13,
                      producer="tf2onnx")


@pytest.mark.parametrize("return_sequences", [True, False])
def test_tf2onnx_style_lstm(tmp_path, return_sequences):
    m, v, _ = check(tf2onnx_style(return_sequences), tmp_path)
    ops = [n.op for n in m.graph.nodes]
    assert ops.count("LSTM") == 1 and "Gather" not in ops


def test_combined_state_tensor_is_paired(tmp_path):
    """One `state` input (2, 1, B, H) split into h0/c0, and one output stacking Y_h/Y_c."""
    nodes = [N("Split", ["state", "two1"], ["hh", "cc"], axis=0),
             N("Squeeze", ["hh", "ax0"], ["h0"]), N("Squeeze", ["cc", "ax0"], ["c0"]),
             N("LSTM", ["x", "W", "R", "B", "", "h0", "c0"], ["Y", "Y_h", "Y_c"], hidden_size=H),
             N("Unsqueeze", ["Y_h", "ax0"], ["a"]), N("Unsqueeze", ["Y_c", "ax0"], ["b"]),
             N("Concat", ["a", "b"], ["state_out"], axis=0)]
    model = make_model(nodes, [vi("x", ["seq", "batch", I]), vi("state", [2, 1, "batch", H])],
                       [vi("Y", None), vi("state_out", None)],
                       lstm_weights() + [i64("two1", [1, 1]), i64("ax0", [0])], opset=13)
    m, v, _ = check(model, tmp_path)
    assert [(s["input"], s["output"]) for s in m.provenance["onnx"]["state"]] == [("state", "state_out")]
    assert "state_out (state)" in v.stream_max_abs


def _two_outputs_model():
    nodes = [N("GRU", ["x", "W", "R", "B", "", "h0"], ["Y", "Y_h"], hidden_size=H),
             N("Identity", ["Y_h"], ["h_copy"])]
    return make_model(nodes, [vi("x", ["seq", "batch", I]), vi("h0", [1, "batch", H])],
                      [vi("Y", None), vi("Y_h", None), vi("h_copy", None)],
                      lstm_weights(G=3), opset=13)


def test_ambiguous_state_needs_state_option(tmp_path):
    model = _two_outputs_model()
    with pytest.raises(ConversionError, match="--state h0=OUTPUT"):
        convert_onnx(model, tmp_path / "a.lstm", verify=False)
    m, v, _ = check(model, tmp_path, state=[("h0", "h_copy")])
    assert m.output_names == ["Y", "Y_h"]
    with pytest.raises(ConversionError, match="does not return"):
        convert_onnx(model, tmp_path / "b.lstm", verify=False, state=[("h0", "Y")])


def test_bidirectional_not_streamable_but_runs(tmp_path):
    nodes = [N("LSTM", ["x", "W", "R", "B"], ["Y"], hidden_size=H, direction="bidirectional")]
    model = make_model(nodes, [vi("x", ["seq", "batch", I])], [vi("Y", None)], lstm_weights(D=2))
    m, v, _ = check(model, tmp_path, stream=False)
    assert not v.streamed
    with pytest.raises(NotStreamableError, match="reverse"):
        m.stream()


def test_bidirectional_classifier_on_final_states(tmp_path):
    """A bidirectional classifier on Y_h (torch: fc(cat(h[-2], h[-1]))): the reverse
    direction's final state (reached at step 0) goes through FirstStep; run() only."""
    nodes = [N("LSTM", ["x", "W", "R", "B"], ["", "Y_h"], hidden_size=H, direction="bidirectional"),
             N("Transpose", ["Y_h"], ["t"], perm=[1, 0, 2]), N("Reshape", ["t", "s"], ["f"]),
             N("MatMul", ["f", "Wd"], ["out"])]
    model = make_model(nodes, [vi("x", ["seq", "batch", I])], [vi("out", None)],
                       lstm_weights(D=2) + [i64("s", [0, -1]), init("Wd", rnd(RNG, 2 * H, O))])
    m, v, _ = check(model, tmp_path, stream=False)
    assert not m.streamable


def test_forward_final_state_head_streams(tmp_path):
    """fc(Y_h[-1]) of a forward 2-layer stack: per step it is fc(h_t) (read at the last step)."""
    nodes = [N("RNN", ["x", "W", "R", "B"], ["Y", ""], hidden_size=H),
             N("Squeeze", ["Y", "ax1"], ["y1"]),
             N("RNN", ["y1", "W2", "R2", "B2"], ["", "Y_h"], hidden_size=H),
             N("Gather", ["Y_h", "m1"], ["h"], axis=0), N("Gemm", ["h", "Wd", "bd"], ["out"])]
    inits = lstm_weights(G=1) + [init("W2", rnd(RNG, 1, H, H, scale=0.5)), init("R2", rnd(RNG, 1, H, H, scale=0.5)),
                                 init("B2", rnd(RNG, 1, 2 * H)), i64("ax1", [1]), init("m1", np.int64(-1)),
                                 init("Wd", rnd(RNG, H, O)), init("bd", rnd(RNG, O))]
    model = make_model(nodes, [vi("x", ["seq", "batch", I])], [vi("out", None)], inits)
    m, v, _ = check(model, tmp_path)
    assert m.provenance["onnx"]["outputs"][0]["readout"] is not None


def test_entry_points_and_bytes_input(tmp_path):
    nodes = [N("GRU", ["x", "W", "R", "B"], ["Y"], hidden_size=H, linear_before_reset=1)]
    model = make_model(nodes, [vi("x", ["seq", "batch", I])], [vi("Y", None)], lstm_weights(G=3))
    src = tmp_path / "g.onnx"
    src.write_bytes(model.SerializeToString())
    rep = convert_file(src, tmp_path / "g.lstm")
    assert rep.verify is not None and rep.verify.ok and "verify against" in str(rep)
    v = verify_file(tmp_path / "g.lstm", src)
    assert v.max_abs_error <= 1e-5 and v.stream_max_abs
    m = lstm_infer.load(tmp_path / "g.lstm")
    assert m.provenance["source"] == "g.onnx" and m.provenance["source_sha256"]
    rep2 = convert_onnx(model.SerializeToString(), tmp_path / "h.lstm", verify=False)
    assert rep2.verify is None
    rep3 = convert_onnx(src, tmp_path / "i.lstm", dtype="fp16")   # compressed after an fp32 conversion
    v16 = verify_file(tmp_path / "i.lstm", src)
    assert v16.max_abs_error <= 1e-2 and "fp16" in " ".join(rep3.warnings)


def test_data_input_with_batch_one_static(tmp_path):
    """A TorchScript-style static export with batch 1 that squeezes the batch axis away."""
    nodes = [N("Squeeze", ["x", "ax0"], ["xs"]),                 # (T, I)
             N("Unsqueeze", ["xs", "ax1"], ["xt"]),             # (T, 1, I)
             N("LSTM", ["xt", "W", "R", "B"], ["Y"], hidden_size=H),
             N("Squeeze", ["Y", "ax12"], ["y2"]), N("MatMul", ["y2", "Wd"], ["out"])]
    inits = lstm_weights() + [i64("ax0", [0]), i64("ax1", [1]), i64("ax12", [1, 2]), init("Wd", rnd(RNG, H, O))]
    model = make_model(nodes, [vi("x", [1, 6, I])], [vi("out", None)], inits, opset=13)
    check(model, tmp_path)


def test_two_data_inputs_become_engine_inputs(tmp_path):
    """Refused until issue 9; several per-step data inputs are engine inputs now."""
    nodes = [N("Add", ["x", "z"], ["y"])]
    model = make_model(nodes, [vi("x", ["seq", I]), vi("z", ["seq", I])], [vi("y", None)])
    m, _, _ = check(model, tmp_path)
    assert m.input_names == ["x", "z"]


def test_verify_with_given_inputs_in_engine_layout(tmp_path):
    nodes = [N("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
             N("LSTM", ["xt", "W", "R", "B"], ["Y"], hidden_size=H)]
    model = make_model(nodes, [vi("x", ["batch", "seq", I])], [vi("Y", None)], lstm_weights())
    convert_onnx(model, tmp_path / "m.lstm", verify=False)
    from converters.onnx_import import verify_onnx
    v = verify_onnx(tmp_path / "m.lstm", model, inputs=[rnd(RNG, 11, I), rnd(RNG, 2, 4, I)])
    assert v.max_abs_error <= 1e-5, str(v)


def test_reverse_only_final_state_head(tmp_path):
    """direction=reverse: fc(Y_h) is read at step 0, where the reverse pass ends."""
    nodes = [N("GRU", ["x", "W", "R", "B"], ["", "Y_h"], hidden_size=H, direction="reverse"),
             N("Squeeze", ["Y_h", "ax0"], ["h"]), N("MatMul", ["h", "Wd"], ["m"]), N("Tanh", ["m"], ["out"])]
    model = make_model(nodes, [vi("x", ["seq", "batch", I])], [vi("out", None)],
                       lstm_weights(G=3) + [i64("ax0", [0]), init("Wd", rnd(RNG, H, O))])
    m, v, _ = check(model, tmp_path, stream=False)
    assert set(m.provenance["onnx"]["outputs"][0]["readout"]) == {1}  # read like a last step...
    assert "FirstStep" in [n.op for n in m.graph.nodes]  # ...of the step-0 value held over time


def test_cli_state_fix_and_list_ops(tmp_path):
    """The CLI spellings: --state IN=OUT, --fix NAME=VALUE (number or .npy), --list-ops."""
    from click.testing import CliRunner

    from lstm_infer.cli import cli
    run = CliRunner().invoke
    r = run(cli, ["convert", "--list-ops"])
    assert r.exit_code == 0 and "LSTM" in r.output and "Conv" in r.output
    src = tmp_path / "two.onnx"
    src.write_bytes(_two_outputs_model().SerializeToString())
    r = run(cli, ["convert", str(src), "-o", str(tmp_path / "a.lstm")])
    assert r.exit_code == 1 and "--state h0=OUTPUT" in r.output
    r = run(cli, ["convert", str(src), "-o", str(tmp_path / "a.lstm"), "--state", "h0=h_copy"])
    assert r.exit_code == 0, r.output
    assert "max abs error" in r.output
    # --fix: a scalar input (say a gain) multiplied into the data before the LSTM
    nodes = [N("Mul", ["x", "gain"], ["xg"]),
             N("LSTM", ["xg", "W", "R", "B"], ["Y"], hidden_size=H)]
    model = make_model(nodes, [vi("x", ["seq", "batch", I]), vi("gain", [])], [vi("Y", None)], lstm_weights())
    src2 = tmp_path / "gain.onnx"
    src2.write_bytes(model.SerializeToString())
    r = run(cli, ["convert", str(src2), "-o", str(tmp_path / "g.lstm"), "--fix", "gain=0.5"])
    assert r.exit_code == 0, r.output
    np.save(tmp_path / "gain.npy", np.float32(0.5))
    r2 = run(cli, ["convert", str(src2), "-o", str(tmp_path / "g2.lstm"), "--fix", f"gain={tmp_path / 'gain.npy'}"])
    assert r2.exit_code == 0, r2.output
    X = np.random.default_rng(0).standard_normal((20, I)).astype(np.float32)
    assert np.array_equal(lstm_infer.load(tmp_path / "g.lstm").run(X), lstm_infer.load(tmp_path / "g2.lstm").run(X))
    r = run(cli, ["convert", str(src2), "-o", str(tmp_path / "g3.lstm"), "--fix", "gain"])
    assert r.exit_code == 1 and "NAME=VALUE" in r.output
