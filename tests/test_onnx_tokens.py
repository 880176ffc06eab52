"""Token models and onnxruntime's quantized ops on small onnx.helper graphs, against
onnxruntime: integer ids into an embedding Gather, how graph inputs are told apart (data,
lengths, unused, ...), com.microsoft DynamicQuantizeLSTM, and the DynamicQuantizeLinear ->
MatMulInteger -> Cast -> Mul head."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import lstm_infer
from converters import ConversionError
from converters.onnx_import import convert_onnx
from converters.onnx_quant import fold_dynamic_matmuls
from converters.onnx_roles import input_roles
from converters.onnx_verify import _session
from lstm_infer.errors import NotStreamableError

from onnx_helpers import check, init, make_model, rnd, vi
from test_quantize import TIGHT_INT8

INT64, INT32 = TensorProto.INT64, TensorProto.INT32


def token_model(V=13, D=5, H=4, op="GRU", direction="forward", lengths="cast", per_step=1,
                table="float", unused=False, seed=0):
    """ids [batch, seq(, per_step)] -> Gather(table) -> (Reshape) -> Transpose -> op -> head;
    `lengths`: None, "cast" (int64 input -> Cast int32 -> sequence_lens) or "int32";
    `table`: "float", "int32" (Cast to float after the Gather) or "uint8" (DequantizeLinear
    after the Gather, as onnxruntime's quantizer writes it)."""
    rng = np.random.default_rng(seed)
    G = {"LSTM": 4, "GRU": 3}[op]
    Dn = 2 if direction == "bidirectional" else 1
    I = per_step * D
    ids_dims = ["batch", "seq"] + ([per_step] if per_step > 1 else [])
    inputs = [vi("ids", ids_dims, INT64)]
    tab = {"float": rnd(rng, V, D), "int32": rng.integers(-3, 4, size=(V, D)).astype(np.int32),
           "uint8": rng.integers(0, 256, size=(V, D)).astype(np.uint8)}[table]
    inits = [init("table", tab), init("t_scale", np.array(0.0137, np.float32)),
             init("t_zp", np.array(131, np.uint8)), init("W", rnd(rng, Dn, G * H, I, scale=0.5)),
             init("R", rnd(rng, Dn, G * H, H, scale=0.5)), init("B", rnd(rng, Dn, 2 * G * H, scale=0.3)),
             init("Wo", rnd(rng, Dn * H, 3, scale=0.5)), init("bo", rnd(rng, 3, scale=0.1)),
             init("shape_btf", np.array([0, 0, -1], np.int64))]
    nodes = [helper.make_node("Gather", ["table", "ids"], ["emb"], name="embed")]
    x = "emb"
    if table == "int32":
        nodes.append(helper.make_node("Cast", ["emb"], ["emb_f"], to=TensorProto.FLOAT))
        x = "emb_f"
    elif table == "uint8":
        nodes.append(helper.make_node("DequantizeLinear", ["emb", "t_scale", "t_zp"], ["emb_f"]))
        x = "emb_f"
    if per_step > 1:
        nodes.append(helper.make_node("Reshape", [x, "shape_btf"], ["emb_flat"]))
        x = "emb_flat"
    nodes.append(helper.make_node("Transpose", [x], ["x_tb"], perm=[1, 0, 2]))
    seq = ""
    if lengths:
        inputs.append(vi("lengths", ["batch"], INT64 if lengths == "cast" else INT32))
        seq = "lengths"
        if lengths == "cast":
            nodes.append(helper.make_node("Cast", ["lengths"], ["lengths32"], to=INT32))
            seq = "lengths32"
    if unused:
        inputs.append(vi("unused_flag", ["batch"], INT64))
    attrs = {"hidden_size": H, "direction": direction}
    if op == "GRU":
        attrs["linear_before_reset"] = 1
    nodes += [helper.make_node(op, ["x_tb", "W", "R", "B", seq], ["Y"], name="rec", **attrs),
              helper.make_node("Transpose", ["Y"], ["Y_t"], perm=[2, 0, 1, 3]),
              helper.make_node("Reshape", ["Y_t", "shape_btf"], ["Y_f"]),
              helper.make_node("MatMul", ["Y_f", "Wo"], ["mm"]),
              helper.make_node("Add", ["mm", "bo"], ["tags"])]
    return make_model(nodes, inputs, [vi("tags", ["batch", "seq", 3])], inits)


@pytest.mark.parametrize("op,direction,lengths", [
    ("GRU", "forward", None), ("GRU", "forward", "cast"), ("LSTM", "forward", "int32"),
    ("GRU", "bidirectional", "cast"), ("LSTM", "bidirectional", None)])
def test_token_input_into_embedding(tmp_path, op, direction, lengths):
    model = token_model(op=op, direction=direction, lengths=lengths)
    roles = input_roles(model)
    assert roles["ids"].kind == "tokens" and roles["ids"].vocab == 13
    if lengths:
        assert roles["lengths"].kind == "lengths"
    m, v, _ = check(model, tmp_path, stream=direction == "forward", tol=1e-5)
    assert m.input_size == 1 and m.graph.nodes[0].op == "Embedding"
    assert m.provenance["onnx"]["lengths_input"] == ("lengths" if lengths else None)
    # run() takes the ids as (B, T, 1) integers; lengths as run(X, lengths=...)
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 13, size=(3, 9))
    lens = np.array([9, 4, 1])
    feeds = {"ids": ids}
    if lengths:
        feeds["lengths"] = lens.astype(np.int64 if lengths == "cast" else np.int32)
    ref = _session(model).run(None, feeds)[0]
    got = m.run(ids[..., None], lengths=lens if lengths else None)
    assert np.abs(got - ref).max() <= 1e-5
    if direction != "forward":
        with pytest.raises(NotStreamableError, match="backwards in time"):
            m.stream()


@pytest.mark.parametrize("table", ["float", "int32", "uint8"])
def test_several_ids_per_step_and_integer_tables(tmp_path, table):
    """ids [batch, seq, 2] (two tokens per step); integer tables cast or dequantized after
    the lookup: the DequantizeLinear folds into the table exactly ((q - zp) * scale)."""
    model = token_model(per_step=2, lengths=None, table=table)
    m, _, _ = check(model, tmp_path, tol=1e-5)
    assert m.input_size == 2 and m.graph.nodes[0].attrs["count"] == 2
    assert [n.op for n in m.graph.nodes][:2] == ["Embedding", "GRU"]  # Scales folded in
    if table == "uint8":
        from onnx import numpy_helper
        q = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "table"))
        exact = (q.astype(np.int32) - 131).astype(np.float32) * np.float32(0.0137)
        assert np.array_equal(m.graph.nodes[0].weights["table"], exact)


def test_unused_input_is_ignored_and_fed_by_the_verifier(tmp_path):
    model = token_model(lengths=None, unused=True)
    assert input_roles(model)["unused_flag"].kind == "unused"
    m, _, _ = check(model, tmp_path)
    assert m.provenance["onnx"]["data_input"] == "ids"


def test_token_model_rejects_bad_ids(tmp_path):
    model = token_model(lengths=None)
    m, _, _ = check(model, tmp_path)
    with pytest.raises(ValueError, match=r"token id 13 at index \(0, 2, 0\) is not an integer in \[0, 13\)"):
        m.run(np.array([[[1], [2], [13]]]))
    s = m.stream()
    with pytest.raises(ValueError, match=r"token id -1 .* in \[0, 13\)"):
        s.step(np.array([-1]))


def test_inputs_that_cannot_be_classified_are_described(tmp_path):
    """An integer input used as numbers is not data, lengths or ids: the error lists what
    each input looks like and what the engine supports."""
    nodes = [helper.make_node("Cast", ["counts"], ["cf"], to=TensorProto.FLOAT),
             helper.make_node("Relu", ["cf"], ["y"])]
    model = make_model(nodes, [vi("counts", ["batch", "seq", 2], INT64), vi("length", ["batch"], INT64)],
                       [vi("y", None)])
    with pytest.raises(ConversionError) as e:
        convert_onnx(model, tmp_path / "m.lstm", verify=False)
    msg = str(e.value)
    assert "'counts' int64 [batch, seq, 2]: not a supported kind of input (cast to float" in msg
    assert "'length' int64 [batch]: not used by any node" in msg
    assert "integer token ids that index an embedding table" in msg and "run(X, lengths=...)" in msg
    # bound with --fix, nothing is left to be the data
    roles = input_roles(model)
    assert roles["counts"].kind == "other" and roles["length"].kind == "unused"


def test_gather_with_computed_indices_says_what_is_supported(tmp_path):
    rng = np.random.default_rng(0)
    # ids + 1 as indices: the input is not token ids (it is used as numbers)
    nodes = [helper.make_node("Add", ["ids", "one"], ["ids1"], name="shift"),
             helper.make_node("Gather", ["table", "ids1"], ["y"])]
    model = make_model(nodes, [vi("ids", ["batch", "seq"], INT64)], [vi("y", None)],
                       [init("table", rnd(rng, 7, 3)), init("one", np.array(1, np.int64))])
    with pytest.raises(ConversionError, match=r"'ids' int64 \[batch, seq\]: not a supported kind "
                                              r"of input \(input 0 of Add 'shift'\)"):
        convert_onnx(model, tmp_path / "m.lstm", verify=False)
    # ids remapped through a second table: the outer lookup's indices are computed
    nodes = [helper.make_node("Gather", ["remap", "ids"], ["mapped"]),
             helper.make_node("Gather", ["table", "mapped"], ["y"])]
    model = make_model(nodes, [vi("ids", ["batch", "seq"], INT64)], [vi("y", None)],
                       [init("table", rnd(rng, 7, 3)), init("remap", np.arange(7)[::-1].copy())])
    with pytest.raises(ConversionError, match="only an embedding lookup"):
        convert_onnx(model, tmp_path / "m.lstm", verify=False)


# ---- com.microsoft DynamicQuantizeLSTM ---------------------------------------------------
def dq_lstm_model(I=6, H=5, direction="forward", per_channel=False, weights="int8", T=None,
                  with_bias=True, seed=0):
    """X [seq, batch, I] -> DynamicQuantizeLSTM -> Y [seq, D, batch, H]; returns (model, the
    same layer as an ONNX LSTM with the dequantized float weights)."""
    rng = np.random.default_rng(seed)
    D = 2 if direction == "bidirectional" else 1
    G = 4 * H
    if weights == "int8":
        Wq = rng.integers(-127, 128, size=(D, I, G)).astype(np.int8)
        Rq = rng.integers(-127, 128, size=(D, H, G)).astype(np.int8)
        wz = np.zeros((D, G) if per_channel else (D,), np.int8)
        rz = np.zeros_like(wz)
    else:  # uint8 with nonzero zero points: dequantized to float
        Wq = rng.integers(0, 256, size=(D, I, G)).astype(np.uint8)
        Rq = rng.integers(0, 256, size=(D, H, G)).astype(np.uint8)
        # onnxruntime wants one zero point per direction even with per-column scales
        wz = np.repeat(rng.integers(120, 136, size=(D, 1)), G if per_channel else 1, 1)
        wz = wz.astype(np.uint8).reshape((D, G) if per_channel else (D,))
        rz = (wz.astype(np.int64) + 3).astype(np.uint8)
    shape = (D, G) if per_channel else (D,)
    ws = rng.uniform(0.002, 0.006, size=shape).astype(np.float32)
    rs = rng.uniform(0.002, 0.006, size=shape).astype(np.float32)
    B = rnd(rng, D, 8 * H, scale=0.3)
    x_dims = [T or "seq", "batch", I]
    names = ["X", "W", "R", "B" if with_bias else "", "", "", "", "", "ws", "wz", "rs", "rz"]
    inits = [init("W", Wq), init("R", Rq), init("ws", ws), init("wz", wz), init("rs", rs),
             init("rz", rz)] + ([init("B", B)] if with_bias else [])
    node = helper.make_node("DynamicQuantizeLSTM", names, ["Y"], domain="com.microsoft",
                            name="qlstm", hidden_size=H, direction=direction)
    model = make_model([node], [vi("X", x_dims)], [vi("Y", None)], inits)
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))

    def deq(q, s, z):
        return (q.astype(np.float64) - z.reshape(D, 1, -1)) * s.reshape(D, 1, -1)
    W = deq(Wq, ws, wz).transpose(0, 2, 1).astype(np.float32)   # ONNX LSTM layout (D, 4H, I)
    R = deq(Rq, rs, rz).transpose(0, 2, 1).astype(np.float32)
    fnode = helper.make_node("LSTM", ["X", "W", "R"] + (["B"] if with_bias else []), ["Y"],
                             hidden_size=H, direction=direction)
    twin = make_model([fnode], [vi("X", x_dims)], [vi("Y", None)],
                      [init("W", W), init("R", R)] + ([init("B", B)] if with_bias else []))
    return model, twin


# onnxruntime rounds X and each step's h to uint8 (256 levels over the tensor's range)
# before its integer GEMMs; the engine computes them in float32. On unit-scale inputs,
# weights up to 0.76 per element (int8 * 0.002..0.006) and T = 12, the outputs (|y| < 1)
# differ by at most 0.0070 (measured: the 12 cases below x 5 random inputs), and from the
# float LSTM with the same dequantized weights by at most 1.8e-7 (uint8: float kernels), 1.3e-5
# (int8 weights: the integer mat-vec rounds its input to int16). The bounds keep ~3x.
DQ_TOL = 0.02


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("weights", ["int8", "uint8"])
def test_dynamic_quantize_lstm(tmp_path, direction, per_channel, weights):
    model, twin = dq_lstm_model(direction=direction, per_channel=per_channel, weights=weights)
    rep = convert_onnx(model, tmp_path / "m.lstm", verify=False)
    m = lstm_infer.load(tmp_path / "m.lstm")
    kinds = {k.split(".")[-1]: v for k, v in m.weight_dtypes().items() if "qlstm" in k}
    assert kinds["W_ih"] == kinds["W_hh"] == ("int8" if weights == "int8" else "fp32")
    assert any("DynamicQuantizeLSTM" in w for w in rep.warnings)
    X = np.random.default_rng(5).standard_normal((12, 3, 6)).astype(np.float32)  # (T, B, I)
    ours = m.run(X.transpose(1, 0, 2))                               # (B, T, D*H)
    D = 2 if direction == "bidirectional" else 1
    as_onnx = ours.reshape(3, 12, D, 5).transpose(1, 2, 0, 3)
    # exact against the float LSTM with the dequantized weights (int8 weights: to the int16
    # rounding of each mat-vec's input, test_quantize.TIGHT_INT8) ...
    ref_float = _session(twin).run(None, {"X": X})[0]
    assert np.abs(as_onnx - ref_float).max() <= (TIGHT_INT8 if weights == "int8" else 1e-6)
    # ... and within the activation rounding of onnxruntime's own kernel
    ref_q = _session(model).run(None, {"X": X})[0]
    err = np.abs(as_onnx - ref_q).max()
    assert err <= DQ_TOL, err
    # the verifier knows the source rounds activations: its tolerance is relative
    from converters.onnx_verify import verify_model
    v = verify_model(m, model, T=12, B=3)
    assert v.ok and any("uint8" in n for n in v.notes), str(v)
    if direction == "forward":
        assert v.stream_max_abs


# ---- DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul --------------------------------
def dq_matmul_model(I=8, O=3, per_column=False, seed=0):
    rng = np.random.default_rng(seed)
    Wq = rng.integers(-127, 128, size=(I, O)).astype(np.int8)
    ws = (rng.uniform(0.004, 0.01, size=O) if per_column else np.array(0.007)).astype(np.float32)
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
             helper.make_node("Mul", ["xs", "ws"], ["scales"]),
             helper.make_node("MatMulInteger", ["xq", "Wq", "xz", "wz"], ["acc"]),
             helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["accf", "scales"], ["mm"]),
             helper.make_node("Add", ["b", "mm"], ["y"])]
    inits = [init("Wq", Wq), init("ws", ws), init("wz", np.array(0, np.int8)),
             init("b", rnd(rng, O, scale=0.1))]
    model = make_model(nodes, [vi("x", ["batch", "seq", I])], [vi("y", ["batch", "seq", O])], inits)
    return model, (Wq.astype(np.float64) * ws).astype(np.float32)


@pytest.mark.parametrize("per_column", [False, True])
def test_dynamic_quantized_matmul_becomes_a_linear(tmp_path, per_column):
    model, W = dq_matmul_model(per_column=per_column)
    folded, notes = fold_dynamic_matmuls(model)
    assert [n.op_type for n in folded.graph.node] == ["MatMul", "Add"] and notes
    rep = convert_onnx(model, tmp_path / "m.lstm", verify=False)
    m = lstm_infer.load(tmp_path / "m.lstm")
    assert [n.op for n in m.graph.nodes] == ["Linear"] and any("MatMulInteger" in w for w in rep.warnings)
    x = np.random.default_rng(1).standard_normal((2, 10, 8)).astype(np.float32)
    b = next(t for t in model.graph.initializer if t.name == "b")
    from onnx import numpy_helper
    exact = x @ W + numpy_helper.to_array(b)
    assert np.abs(m.run(x) - exact).max() <= 1e-5
    # onnxruntime rounds x to 256 levels of its range (|x| < 4.5 here: steps of ~0.035):
    # per output sum_k |W_k| * step / 2 ~ 8 * 0.9 * 0.018 ~ 0.13 at worst; measured 0.032
    # (both cases x 5 random inputs)
    ref = _session(model).run(None, {"x": x})[0]
    assert np.abs(m.run(x) - ref).max() <= 0.08
    v = convert_onnx(model, tmp_path / "v.lstm").verify
    assert v.ok and any("argmax" in n for n in v.notes), str(v)
