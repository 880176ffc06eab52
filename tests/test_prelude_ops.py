"""Each prelude op (lstm_infer/prelude) and its ONNX converter (converters/onnx_prelude_ops)
checked against onnxruntime, one ONNX node at a time, on small random images of two
widths. Tolerance: max abs error 1e-5 (float32, unit-scale data)."""
import numpy as np
import pytest

pytest.importorskip("onnxruntime")
import onnxruntime as ort  # noqa: E402
from onnx import helper  # noqa: E402

from converters.onnx_fold import attrs_of  # noqa: E402
from converters.onnx_prelude_ops import HANDLERS, Image, PreludeBuilder  # noqa: E402
from lstm_infer.prelude import PRELUDE_OPS  # noqa: E402
from lstm_infer.prelude.graph import check_prelude_nodes  # noqa: E402
from onnx_helpers import init, make_model, rnd, vi  # noqa: E402

TOL = 1e-5
C, H = 4, 9


def _check(op_type, attrs=None, consts=(), second_image=None, widths=(7, 12), c=C, h=H, seed=0):
    """Convert one ONNX node on x [B, c, h, W] (plus constants, plus optionally a second
    image input y of shape `second_image`), run the prelude ops and onnxruntime; compare."""
    rng = np.random.default_rng(seed)
    names = ["x"] + (["y"] if second_image is not None else []) + [n for n, _ in consts]
    node = helper.make_node(op_type, names, ["out"], name="n0", **(attrs or {}))
    inputs = [vi("x", ["B", c, h, "W"])]
    if second_image is not None:
        inputs.append(vi("y", ["B"] + [d if d != -1 else "W" for d in second_image]))
    model = make_model([node], inputs, [vi("out", None)], [init(n, v) for n, v in consts])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    pb = PreludeBuilder()
    args = [Image("x", c)] + ([Image("y", second_image[0])] if second_image is not None else [])
    args += [np.asarray(v) for _, v in consts]
    HANDLERS[op_type](pb, node, args, attrs_of(node), "out")
    doc = {"input": {"name": "x", "channels": c, "height": h}, "nodes": pb.nodes, "output": "out"}
    if second_image is not None:  # the second image as a node input: give it a producer
        doc["nodes"].insert(0, {"name": "y_src", "op": "Act2d", "inputs": ["x"], "outputs": ["y"],
                                "attrs": {"kind": "identity"}, "weights": {}})
    shapes = check_prelude_nodes(doc, pb.tensors)
    worst = 0.0
    for w in widths:
        x = rnd(rng, 2, c, h, w)
        feeds = {"x": x}
        values = {"x": x}
        if second_image is not None:
            y = rnd(rng, 2, *[w if d == -1 else d for d in second_image])
            feeds["y"] = values["y"] = y
        ref = sess.run(None, feeds)[0]
        for nd in doc["nodes"]:
            if nd["name"] == "y_src":
                continue
            weights = {r: pb.tensors[t] for r, t in nd["weights"].items()}
            values[nd["outputs"][0]] = PRELUDE_OPS[nd["op"]].run(
                nd["attrs"], weights, [values[v] for v in nd["inputs"]])
        got = values["out"]
        s = shapes["out"]
        want_w = s.w if isinstance(s.w, int) else s.w.at(w)
        assert got.shape == ref.shape == (2, s.c, s.h, want_w), (got.shape, ref.shape, s)
        assert got.dtype == np.float32
        worst = max(worst, float(np.abs(got - ref).max()))
    assert worst <= TOL, f"{op_type} {attrs}: max abs error {worst}"
    return pb


CONVS = [
    dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),                 # stem conv
    dict(kernel_shape=[1, 1]),                                                    # pointwise
    dict(kernel_shape=[3, 2], pads=[0, 1, 2, 0], strides=[1, 2], dilations=[2, 1]),
]


@pytest.mark.parametrize("attrs", CONVS)
def test_conv_groups_1(attrs):
    rng = np.random.default_rng(1)
    kh, kw = attrs["kernel_shape"]
    _check("Conv", attrs, [("w", rnd(rng, 6, C, kh, kw)), ("b", rnd(rng, 6))])


@pytest.mark.parametrize("k,stride,mult", [(3, [2, 1], 1), (5, [1, 1], 1), (3, [1, 1], 2)])
def test_conv_depthwise(k, stride, mult):
    rng = np.random.default_rng(2)
    p = k // 2
    _check("Conv", dict(kernel_shape=[k, k], pads=[p, p, p, p], strides=stride, group=C),
           [("w", rnd(rng, C * mult, 1, k, k))])


def test_conv_grouped():
    rng = np.random.default_rng(3)
    _check("Conv", dict(kernel_shape=[2, 3], pads=[1, 0, 0, 2], group=2),
           [("w", rnd(rng, 6, C // 2, 2, 3)), ("b", rnd(rng, 6))])


def test_batchnorm():
    rng = np.random.default_rng(4)
    _check("BatchNormalization", dict(epsilon=1e-3),
           [("s", rnd(rng, C)), ("bb", rnd(rng, C)), ("m", rnd(rng, C)),
            ("v", np.abs(rnd(rng, C)) + 0.5)])


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("shape", [(), (1, C, 1, 1), (C, 1, 1)])
def test_constant_arithmetic(op, shape):
    rng = np.random.default_rng(5)
    c = (np.abs(rnd(rng, *shape)) + 0.5).astype(np.float32)
    _check(op, consts=[("c", c)])


def test_constant_first_operand():
    """c - x: the constant on the left."""
    rng = np.random.default_rng(6)
    x = vi("x", ["B", C, H, "W"])
    node = helper.make_node("Sub", ["c", "x"], ["out"], name="n0")
    model = make_model([node], [x], [vi("out", None)], [init("c", rnd(rng, 1, C, 1, 1))])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    pb = PreludeBuilder()
    HANDLERS["Sub"](pb, node, [np.asarray(rnd(np.random.default_rng(6), 1, C, 1, 1)), Image("x", C)],
                    {}, "out")
    nd = pb.nodes[0]
    xv = rnd(rng, 2, C, H, 5)
    got = PRELUDE_OPS[nd["op"]].run(nd["attrs"], {r: pb.tensors[t] for r, t in nd["weights"].items()}, [xv])
    assert np.abs(got - sess.run(None, {"x": xv})[0]).max() <= TOL


def test_constant_varying_over_width_is_refused():
    from converters.errors import OnnxConversionError
    node = helper.make_node("Add", ["x", "c"], ["out"], name="n0")
    with pytest.raises(OnnxConversionError, match="varies over more than the channels"):
        HANDLERS["Add"](PreludeBuilder(), node, [Image("x", C), np.ones((1, C, H, 1), np.float32)],
                        {}, "out")


@pytest.mark.parametrize("op", ["Add", "Mul", "Sub", "Div", "Max", "Min"])
def test_two_images_broadcast(op):
    """The squeeze-excitation shape: (B, C, H, W) with (B, C, 1, 1)."""
    _check(op, second_image=(C, 1, 1))


def test_two_images_same_shape():
    _check("Mul", second_image=(C, H, -1))


@pytest.mark.parametrize("op,attrs", [("Relu", {}), ("Sigmoid", {}), ("Tanh", {}),
                                      ("HardSigmoid", dict(alpha=1 / 6, beta=0.5)),
                                      ("HardSigmoid", {}), ("HardSwish", {}),
                                      ("LeakyRelu", dict(alpha=0.2)), ("Identity", {})])
def test_activations(op, attrs):
    pb = _check(op, attrs)
    assert pb.nodes[0]["op"] == "Act2d"


def test_clip_from_inputs():
    _check("Clip", consts=[("lo", np.array(0.0, np.float32)), ("hi", np.array(0.5, np.float32))])


@pytest.mark.parametrize("attrs", [dict(kernel_shape=[2, 2], strides=[2, 2]),
                                   dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]),
                                   dict(kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 1, 1])])
@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_pools(op, attrs):
    _check(op, attrs)


def test_average_pool_counting_pads():
    _check("AveragePool", dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1))


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pools(op):
    _check(op)


def test_ceil_mode_pool_is_refused():
    from converters.errors import OnnxConversionError
    node = helper.make_node("MaxPool", ["x"], ["out"], name="n0", kernel_shape=[2, 2], ceil_mode=1)
    with pytest.raises(OnnxConversionError, match="ceil_mode"):
        HANDLERS["MaxPool"](PreludeBuilder(), node, [Image("x", C)], attrs_of(node), "out")
