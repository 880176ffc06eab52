"""Non-recurrent ONNX ops, one (or a few) nodes each, vs onnxruntime: element-wise ops,
Gemm/MatMul/Conv, normalisation, reductions and the data movement around them, with the
time axis in various positions (whole sequence and streamed)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from converters import ConversionError
from converters.onnx_import import SUPPORTED_OPS, convert_onnx

from onnx_helpers import check, init, make_model, rnd, vi

N = helper.make_node
RNG = np.random.default_rng(0)


def graph(nodes, x_dims, outs=("y",), inits=(), opset=17, extra_inputs=()):
    return make_model(nodes, [vi("x", x_dims)] + list(extra_inputs), [vi(o, None) for o in outs],
                      inits, opset=opset)


def i64(name, vals):
    return init(name, np.asarray(vals, np.int64))


X3 = ["seq", "batch", 5]

UNARY = [("Relu", {}), ("Tanh", {}), ("Sigmoid", {}), ("Exp", {}), ("Neg", {}), ("Abs", {}),
         ("Erf", {}), ("Softplus", {}), ("Softsign", {}), ("LeakyRelu", {}), ("LeakyRelu", {"alpha": 0.3}),
         ("Elu", {}), ("Elu", {"alpha": 0.5}), ("HardSigmoid", {}), ("HardSigmoid", {"alpha": 0.3, "beta": 0.6}),
         ("Selu", {}), ("ThresholdedRelu", {"alpha": 0.2}), ("Identity", {}), ("Dropout", {})]


@pytest.mark.parametrize("op,attrs", UNARY, ids=[f"{o}{a}" for o, a in UNARY])
def test_unary(tmp_path, op, attrs):
    check(graph([N(op, ["x"], ["y"], **attrs)], X3), tmp_path)


@pytest.mark.parametrize("op", ["Log", "Sqrt", "Reciprocal"])
def test_unary_positive_domain(tmp_path, op):
    check(graph([N("Abs", ["x"], ["a"]), N("Add", ["a", "one"], ["b"]), N(op, ["b"], ["y"])], X3,
                inits=[init("one", np.float32(0.5))]), tmp_path)


@pytest.mark.parametrize("approx", ["none", "tanh"])
def test_gelu(tmp_path, approx):
    check(graph([N("Gelu", ["x"], ["y"], approximate=approx)], X3, opset=20), tmp_path)


def test_hardswish(tmp_path):
    check(graph([N("HardSwish", ["x"], ["y"])], X3, opset=14), tmp_path)


@pytest.mark.parametrize("lo,hi", [(-0.5, 0.7), (-0.3, None), (None, 0.2)])
def test_clip(tmp_path, lo, hi):
    ins = ["x", "lo" if lo is not None else "", "hi" if hi is not None else ""]
    inits = [init(n, np.float32(v)) for n, v in (("lo", lo), ("hi", hi)) if v is not None]
    while ins[-1] == "":
        ins.pop()
    check(graph([N("Clip", ins, ["y"])], X3, inits=inits, opset=13), tmp_path)
    check(graph([N("Clip", ["x"], ["y"], **{k: v for k, v in (("min", lo), ("max", hi)) if v is not None})],
                X3, opset=10), tmp_path, name="b.lstm")


CONSTS = {"scalar": np.float32(0.7), "vector": rnd(RNG, 5), "row": rnd(RNG, 1, 1, 5),
          "neg": np.float32(-1.5)}


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("which", list(CONSTS))
@pytest.mark.parametrize("left", [False, True])
def test_arithmetic_with_constant(tmp_path, op, which, left):
    c = CONSTS[which]
    if op == "Div" and left:
        nodes = [N("Abs", ["x"], ["a"]), N("Add", ["a", "one"], ["b"]), N(op, ["c", "b"], ["y"])]
    else:
        nodes = [N(op, ["c", "x"] if left else ["x", "c"], ["y"])]
    check(graph(nodes, X3, inits=[init("c", c), init("one", np.float32(1.0))]), tmp_path)


@pytest.mark.parametrize("e", [2.0, 3.0, 0.5, -1.0, 1.0, 1.7, "vec"])
def test_pow(tmp_path, e):
    c = np.abs(rnd(RNG, 5)) + 0.5 if e == "vec" else np.float32(e)
    nodes = [N("Abs", ["x"], ["a"]), N("Add", ["a", "one"], ["b"]), N("Pow", ["b", "e"], ["y"])]
    if e in (2.0, 3.0):
        nodes = [N("Pow", ["x", "e"], ["y"])]  # negative bases with integer exponents
    check(graph(nodes, X3, inits=[init("e", c), init("one", np.float32(0.5))]), tmp_path)


def test_pow_constant_base(tmp_path):
    check(graph([N("Pow", ["c", "x"], ["y"])], X3, inits=[init("c", np.float32(1.5))]), tmp_path)


def test_binary_between_per_step_tensors(tmp_path):
    nodes = [N("Sigmoid", ["x"], ["s"]), N("Mul", ["x", "s"], ["m"]),                  # swish
             N("ReduceMean", ["x"], ["mu"], axes=[-1], keepdims=1), N("Sub", ["m", "mu"], ["d"]),  # broadcast
             N("Div", ["d", "s"], ["q"]), N("Max", ["q", "x"], ["mx"]), N("Min", ["mx", "c"], ["mn"]),
             N("Sum", ["mn", "x", "s"], ["y"])]
    check(graph(nodes, X3, inits=[init("c", np.float32(0.8))], opset=17), tmp_path)


@pytest.mark.parametrize("transB", [0, 1])
@pytest.mark.parametrize("C", ["none", "vector", "scalar"])
def test_gemm_flattened_steps(tmp_path, transB, C):
    """(T, B, F) -> Reshape(-1, F) -> Gemm -> Reshape back with Shape bookkeeping."""
    W = rnd(RNG, 4, 5) if transB else rnd(RNG, 5, 4)
    inits = [init("W", W), i64("m1f", [-1, 5]), i64("s0", [0]), i64("s2", [2]), i64("o", [4])]
    gi = ["f", "W"]
    if C != "none":
        inits.append(init("C", rnd(RNG, 4) if C == "vector" else np.float32(0.3)))
        gi.append("C")
    nodes = [N("Reshape", ["x", "m1f"], ["f"]), N("Gemm", gi, ["g"], transB=transB, alpha=0.8, beta=1.2),
             N("Shape", ["x"], ["sh"]), N("Slice", ["sh", "s0", "s2"], ["tb"]),
             N("Concat", ["tb", "o"], ["ns"], axis=0), N("Reshape", ["g", "ns"], ["y"])]
    check(graph(nodes, X3, inits=inits), tmp_path)


def test_gemm_transA_time_on_axis1(tmp_path):
    """x (F, T): Gemm(transA=1) contracts the feature axis 0."""
    check(graph([N("Gemm", ["x", "W", "C"], ["y"], transA=1)], [5, "seq"],
                inits=[init("W", rnd(RNG, 5, 3)), init("C", rnd(RNG, 3))]), tmp_path)


def test_gemm_constant_left(tmp_path):
    """y = W (3, 5) @ x^T (5, T) -> (3, T): time on the output's second axis."""
    check(graph([N("Gemm", ["W", "x"], ["y"], transB=1)], ["seq", 5], inits=[init("W", rnd(RNG, 3, 5))]),
          tmp_path)


@pytest.mark.parametrize("form", ["vec", "mat", "left", "batched1", "rows"])
def test_matmul(tmp_path, form):
    if form == "vec":
        check(graph([N("MatMul", ["x", "W"], ["y"])], X3, inits=[init("W", rnd(RNG, 5))]), tmp_path)
    elif form == "mat":
        check(graph([N("MatMul", ["x", "W"], ["y"])], X3, inits=[init("W", rnd(RNG, 5, 3))]), tmp_path)
    elif form == "batched1":
        check(graph([N("MatMul", ["x", "W"], ["y"])], X3, inits=[init("W", rnd(RNG, 1, 5, 3))]), tmp_path)
    elif form == "left":  # W (2, 4) @ x (T, B, 4, 3)
        check(graph([N("MatMul", ["W", "x"], ["y"])], ["seq", "batch", 4, 3],
                    inits=[init("W", rnd(RNG, 2, 4))]), tmp_path)
    else:  # rows: x (T, B, 3, 5) @ W (5, 2): one matrix per row -> block-diagonal Linear
        check(graph([N("MatMul", ["x", "W"], ["y"])], ["seq", "batch", 3, 5],
                    inits=[init("W", rnd(RNG, 5, 2))]), tmp_path)


CONV = [dict(), dict(strides=[2]), dict(pads=[1, 2]), dict(dilations=[2], pads=[2, 2]),
        dict(group=2), dict(group=4, pads=[1, 1]), dict(auto_pad="SAME_UPPER"),
        dict(auto_pad="SAME_LOWER", strides=[2]), dict(auto_pad="VALID", strides=[3])]


@pytest.mark.parametrize("attrs", CONV, ids=[str(c) for c in CONV])
@pytest.mark.parametrize("bias", [False, True])
def test_conv1d_per_frame(tmp_path, attrs, bias):
    """x (B, T, C*L) -> Reshape (B*T, C, L) -> Conv (time as its batch) -> Reshape (B, T, -1)."""
    C, L, M, K = 4, 9, 4, 3
    g = attrs.get("group", 1)
    inits = [init("W", rnd(RNG, M, C // g, K, scale=0.5)), i64("s1", [-1, C, L]), i64("s2", [0, 0, -1]),
             i64("s0", [0]), i64("e2", [2]), i64("m1", [-1])]
    ci = ["r", "W"]
    if bias:
        inits.append(init("bias", rnd(RNG, M)))
        ci.append("bias")
    nodes = [N("Reshape", ["x", "s1"], ["r"]), N("Conv", ci, ["c"], kernel_shape=[K], **attrs),
             N("Shape", ["x"], ["sh"]), N("Slice", ["sh", "s0", "e2"], ["bt"]),
             N("Concat", ["bt", "m1"], ["ns"], axis=0), N("Reshape", ["c", "ns"], ["y"])]
    check(graph(nodes, ["batch", "seq", C * L], inits=inits), tmp_path)


def test_conv_batchnorm_relu(tmp_path):
    """x (T, C, L): time is the conv's batch axis; BatchNormalization folds into the Conv."""
    C, L, M = 3, 8, 5
    inits = [init("W", rnd(RNG, M, C, 3, scale=0.5)), init("b", rnd(RNG, M)), init("g", rnd(RNG, M)),
             init("be", rnd(RNG, M)), init("mu", rnd(RNG, M)), init("var", np.abs(rnd(RNG, M)) + 0.5)]
    nodes = [N("Conv", ["x", "W", "b"], ["c"], pads=[1, 1]),
             N("BatchNormalization", ["c", "g", "be", "mu", "var"], ["n"], epsilon=1e-3),
             N("Relu", ["n"], ["y"])]
    m, _, _ = check(graph(nodes, ["seq", C, L], inits=inits), tmp_path)
    assert [n.op for n in m.graph.nodes] == ["Conv1d", "Activation"]


def test_batchnorm_on_features(tmp_path):
    F = 5
    inits = [init("g", rnd(RNG, F)), init("be", rnd(RNG, F)), init("mu", rnd(RNG, F)),
             init("var", np.abs(rnd(RNG, F)) + 0.5)]
    # (T, F) viewed as BatchNormalization's (N, C)
    check(graph([N("BatchNormalization", ["x", "g", "be", "mu", "var"], ["y"])], ["seq", F], inits=inits),
          tmp_path)


@pytest.mark.parametrize("mode,value", [("constant", 0.0), ("constant", 0.5), ("reflect", 0.0),
                                        ("edge", 0.0)])
def test_pad(tmp_path, mode, value):
    nodes = [N("Pad", ["x", "p", "v"], ["y"], mode=mode)]
    check(graph(nodes, X3, inits=[i64("p", [0, 0, 2, 0, 0, 1]), init("v", np.float32(value))], opset=13),
          tmp_path)
    check(graph([N("Pad", ["x"], ["y"], mode=mode, pads=[0, 0, 1, 0, 0, 2], value=value)], X3, opset=10),
          tmp_path, name="b.lstm")


def test_slice_gather_split_concat_transpose(tmp_path):
    nodes = [N("Slice", ["x", "st", "en", "ax", "sp"], ["s"]),            # x[..., 4:0:-2]
             N("Gather", ["x", "gi"], ["g"], axis=2),                       # features [4, 0, 0]
             N("Split", ["x", "sz"], ["a", "b"], axis=2),
             N("Concat", ["s", "g", "b", "a"], ["c"], axis=-1),
             N("Transpose", ["c"], ["t"], perm=[2, 0, 1]),                  # features first
             N("Relu", ["t"], ["r"]), N("Transpose", ["r"], ["y"], perm=[1, 2, 0])]
    inits = [i64("st", [4]), i64("en", [0]), i64("ax", [2]), i64("sp", [-2]), i64("gi", [4, 0, 0]),
             i64("sz", [2, 3])]
    m, _, _ = check(graph(nodes, X3, inits=inits, opset=13), tmp_path)


def test_split_opset18_num_outputs(tmp_path):
    check(graph([N("Split", ["x"], ["a", "b"], axis=-1, num_outputs=2), N("Sub", ["a", "c"], ["y"])],
                ["seq", "batch", 6], inits=[init("c", rnd(RNG, 3))], opset=18), tmp_path)


def test_squeeze_unsqueeze_flatten_reshape(tmp_path):
    nodes = [N("Unsqueeze", ["x", "u"], ["a"]),             # (T, B, 1, 5)
             N("Reshape", ["a", "r"], ["b"]),                # (T, B, 5, 1)
             N("Squeeze", ["b", "q"], ["c"]),                # (T, B, 5)
             N("Flatten", ["c"], ["d"], axis=2),             # (T*B, 5)
             N("Shape", ["x"], ["sh"]), N("Concat", ["sh"], ["sh2"], axis=0),
             N("Reshape", ["d", "sh2"], ["y"])]
    check(graph(nodes, X3, inits=[i64("u", [2]), i64("r", [0, 0, 5, 1]), i64("q", [3])], opset=13), tmp_path)


def test_last_time_step(tmp_path):
    """out[:, -1] (Gather) and out[:, -1:] (Slice): read at the last step."""
    nodes = [N("Gather", ["x", "m1"], ["g"], axis=1), N("Slice", ["x", "m1v", "big", "one"], ["s"]),
             N("Relu", ["g"], ["y"]), N("Tanh", ["s"], ["z"])]
    inits = [init("m1", np.int64(-1)), i64("m1v", [-1]), i64("big", [2 ** 62]), i64("one", [1])]
    m, v, _ = check(graph(nodes, ["batch", "seq", 5], outs=("y", "z"), inits=inits), tmp_path)
    assert v.stream_max_abs


def test_expand_constantofshape_where_cast(tmp_path):
    nodes = [N("Shape", ["x"], ["sh"]),
             N("ConstantOfShape", ["sh"], ["z"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.25])),
             N("Add", ["x", "z"], ["a"]),
             N("Expand", ["c", "sh"], ["e"]), N("Mul", ["a", "e"], ["b"]),
             N("Cast", ["b"], ["bc"], to=TensorProto.FLOAT),
             N("Relu", ["bc"], ["r"]),
             N("Where", ["cond", "bc", "r"], ["w"]), N("Where", ["cond", "w", "k"], ["y"])]
    inits = [init("c", rnd(RNG, 5)), init("cond", np.array([1, 0, 1, 1, 0], bool)), init("k", np.float32(2.0))]
    check(graph(nodes, X3, inits=inits), tmp_path)


@pytest.mark.parametrize("axis", [-1, 2])
def test_layernorm(tmp_path, axis):
    shape = ["seq", "batch", 3, 4]
    fs = [3, 4][axis - 4 if axis > 0 else axis:] if axis != -1 else [4]
    fs = [3, 4] if axis == 2 else [4]
    inits = [init("g", rnd(RNG, *fs)), init("b", rnd(RNG, *fs))]
    check(graph([N("LayerNormalization", ["x", "g", "b"], ["y"], axis=axis, epsilon=1e-4)], shape,
                inits=inits), tmp_path)


def test_layernorm_decomposed(tmp_path):
    """LayerNorm as older exporters write it: ReduceMean, Sub, Pow, Sqrt, Div, Mul, Add."""
    nodes = [N("ReduceMean", ["x"], ["mu"], axes=[-1]), N("Sub", ["x", "mu"], ["d"]),
             N("Pow", ["d", "two"], ["sq"]), N("ReduceMean", ["sq"], ["var"], axes=[-1]),
             N("Add", ["var", "eps"], ["ve"]), N("Sqrt", ["ve"], ["sd"]), N("Div", ["d", "sd"], ["n"]),
             N("Mul", ["n", "g"], ["ng"]), N("Add", ["ng", "b"], ["y"])]
    inits = [init("two", np.float32(2)), init("eps", np.float32(1e-5)), init("g", rnd(RNG, 5)),
             init("b", rnd(RNG, 5))]
    check(graph(nodes, X3, inits=inits, opset=13), tmp_path)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("opset,axis", [(13, -1), (13, 2), (13, 3), (11, 2), (11, -1)])
def test_softmax(tmp_path, op, opset, axis):
    check(graph([N(op, ["x"], ["y"], axis=axis)], ["seq", "batch", 3, 4], opset=opset), tmp_path)


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin"])
@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("opset", [13, 18])
def test_reduce(tmp_path, op, keepdims, opset):
    axes = [-1, 2]
    if opset >= 18 or (op == "ReduceSum" and opset >= 13):
        nodes = [N(op, ["x", "ax"], ["y"], keepdims=keepdims)]
        inits = [i64("ax", axes)]
    else:
        nodes = [N(op, ["x"], ["y"], keepdims=keepdims, axes=axes)]
        inits = []
    check(graph(nodes, ["seq", "batch", 3, 4], inits=inits, opset=opset), tmp_path)


def test_reduce_middle_axis(tmp_path):
    check(graph([N("ReduceMax", ["x"], ["y"], axes=[2], keepdims=0)], ["seq", "batch", 3, 4]), tmp_path)


@pytest.mark.parametrize("cond", [True, False])
def test_if_with_constant_condition(tmp_path, cond):
    then_g = helper.make_graph([N("Relu", ["x"], ["t"])], "then", [], [vi("t", None)])
    else_g = helper.make_graph([N("Tanh", ["x"], ["e"])], "else", [], [vi("e", None)])
    nodes = [N("Shape", ["x"], ["sh"]), N("Gather", ["sh", "two"], ["f"], axis=0),
             N("Equal", ["f", "five"], ["c"]) if cond else N("Equal", ["f", "four"], ["c"]),
             N("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)]
    m, _, _ = check(graph(nodes, X3, inits=[init("two", np.int64(2)), init("five", np.int64(5)),
                                            init("four", np.int64(4))]), tmp_path)
    assert m.graph.nodes[-1].attrs["kind"] == ("relu" if cond else "tanh")


@pytest.mark.parametrize("dims", [["seq", 5], [5, "seq"], ["batch", 5, "seq"], [2, "seq", "batch", 3]])
def test_time_axis_anywhere(tmp_path, dims):
    check(graph([N("Mul", ["x", "c"], ["m"]), N("Tanh", ["m"], ["y"])], dims,
                inits=[init("c", np.float32(1.3))]), tmp_path)


def test_unsupported_op_is_named(tmp_path):
    model = graph([N("Sin", ["x"], ["y"], name="my_sin")], X3)
    with pytest.raises(ConversionError) as e:
        convert_onnx(model, tmp_path / "x.lstm", verify=False)
    msg = str(e.value)
    assert "'Sin'" in msg and "my_sin" in msg and "LSTM" in msg and "--list-ops" in msg
    assert SUPPORTED_OPS == sorted(SUPPORTED_OPS) and "Conv" in SUPPORTED_OPS


@pytest.mark.parametrize("nodes,inits,match", [
    # over time alone ReduceMean is a running mean (TimeReduce); with the features too it is not
    ([N("ReduceMean", ["x"], ["y"], axes=[0, 2])], [], "time"),
    ([N("Conv", ["x", "W"], ["y"])], [init("W", np.ones((2, 5, 3), np.float32))], "time"),
    ([N("Gather", ["x", "z"], ["y"], axis=0)], [init("z", np.int64(0))], "last time step"),
])
def test_not_per_step_is_explained(tmp_path, nodes, inits, match):
    with pytest.raises(ConversionError, match=match):
        convert_onnx(graph(nodes, ["batch", 5, "seq"] if nodes[0].op_type == "Conv" else X3,
                           inits=inits), tmp_path / "x.lstm", verify=False)


def test_fix_binds_a_scalar_input(tmp_path):
    nodes = [N("Mul", ["x", "rate"], ["y"])]
    model = graph(nodes, X3, extra_inputs=[vi("rate", [])])
    with pytest.raises(ConversionError, match="fix"):
        convert_onnx(model, tmp_path / "x.lstm", verify=False)
    check(model, tmp_path, fix={"rate": 16000.0})
    check(model, tmp_path, fix={"rate": "0.5"}, name="b.lstm")
