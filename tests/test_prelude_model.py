"""A small CRNN built with onnx.helper (2-D CNN with BatchNorm, hard-swish, squeeze-
excitation, a strided depthwise conv and a max pool; the width becomes time; a
bidirectional LSTM whose initial state is PaddlePaddle's fill_constant_batch_size_like
(Tile by the batch size); a Linear head and softmax) converted with an image prelude and
checked against onnxruntime (max abs error 1e-5), plus the prelude's contract: run() on
images only, stream() refused with the reason, clear input errors, and a file whose
prelude is corrupt or unknown to the reader refused at load."""
import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
import onnxruntime as ort  # noqa: E402
from onnx import helper  # noqa: E402

import lstm_infer  # noqa: E402
from converters import ConversionError, convert_onnx  # noqa: E402
from lstm_infer import fileformat  # noqa: E402
from lstm_infer.errors import ModelFormatError, NotStreamableError  # noqa: E402
from onnx_helpers import init, make_model, rnd, vi  # noqa: E402

TOL = 1e-5
C1, HID, OUT, HEIGHT = 6, 5, 7, 8


def crnn(seed=0, height="H"):
    rng = np.random.default_rng(seed)
    n = helper.make_node
    cst = [init("w0", rnd(rng, C1, 3, 3, 3, scale=0.5)),
           init("bn_s", rnd(rng, C1)), init("bn_b", rnd(rng, C1)), init("bn_m", rnd(rng, C1, scale=0.1)),
           init("bn_v", np.abs(rnd(rng, C1)) + 0.5),
           init("three", np.array(3, np.float32)), init("zero", np.array(0, np.float32)),
           init("six", np.array(6, np.float32)),
           init("se_w1", rnd(rng, 3, C1, 1, 1)), init("se_b1", rnd(rng, 3)),
           init("se_b1_shape", np.array([1, 3, 1, 1], np.int64)),
           init("se_w2", rnd(rng, C1, 3, 1, 1)), init("se_b2", rnd(rng, C1)),
           init("dw", rnd(rng, C1, 1, 3, 3, scale=0.5)),
           init("W", rnd(rng, 2, 4 * HID, C1, scale=0.4)), init("R", rnd(rng, 2, 4 * HID, HID, scale=0.4)),
           init("Bias", rnd(rng, 2, 8 * HID, scale=0.1)),
           init("h_init", rnd(rng, 1, 2, HID, scale=0.5)), init("c_init", rnd(rng, 1, 2, HID, scale=0.5)),
           init("s0", np.array([0], np.int64)), init("s1", np.array([1], np.int64)),
           init("ones2", np.array([1, 1], np.int64)),
           init("shape3", np.array([0, 0, 2 * HID], np.int64)),
           init("fc_w", rnd(rng, 2 * HID, OUT)), init("fc_b", rnd(rng, OUT))]
    nodes = [
        n("Conv", ["x", "w0"], ["c0"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
        n("BatchNormalization", ["c0", "bn_s", "bn_b", "bn_m", "bn_v"], ["bn"], epsilon=1e-5),
        # hard-swish as Paddle exports it: x * clip(x + 3, 0, 6) / 6
        n("Add", ["bn", "three"], ["a3"]), n("Clip", ["a3", "zero", "six"], ["cl"]),
        n("Mul", ["bn", "cl"], ["m"]), n("Div", ["m", "six"], ["hs"]),
        # squeeze-excitation, the conv bias added after a Reshape of a constant
        n("GlobalAveragePool", ["hs"], ["gap"]), n("Conv", ["gap", "se_w1"], ["se1"], kernel_shape=[1, 1]),
        n("Reshape", ["se_b1", "se_b1_shape"], ["se_b1r"]), n("Add", ["se1", "se_b1r"], ["se1b"]),
        n("Relu", ["se1b"], ["se1r"]),
        n("Conv", ["se1r", "se_w2", "se_b2"], ["se2"], kernel_shape=[1, 1]),
        n("HardSigmoid", ["se2"], ["gate"], alpha=1 / 6, beta=0.5),
        n("Mul", ["hs", "gate"], ["se"]),
        n("Conv", ["se", "dw"], ["dwo"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 1], group=C1),
        n("MaxPool", ["dwo"], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
        n("Squeeze", ["pool", "axes2"], ["sq"]),
        n("Transpose", ["sq"], ["ntc"], perm=[0, 2, 1]),
        # fill_constant_batch_size_like: tile a constant by [batch, 1, 1]
        n("Shape", ["ntc"], ["shp"]), n("Slice", ["shp", "s0", "s1"], ["nb"]),
        n("Concat", ["nb", "ones2"], ["reps"], axis=0),
        n("Tile", ["h_init", "reps"], ["h_t"]), n("Transpose", ["h_t"], ["h0"], perm=[1, 0, 2]),
        n("Tile", ["c_init", "reps"], ["c_t"]), n("Transpose", ["c_t"], ["c0s"], perm=[1, 0, 2]),
        n("Transpose", ["ntc"], ["tnc"], perm=[1, 0, 2]),
        n("LSTM", ["tnc", "W", "R", "Bias", "", "h0", "c0s"], ["Y"], hidden_size=HID,
          direction="bidirectional"),
        n("Transpose", ["Y"], ["Yt"], perm=[0, 2, 1, 3]), n("Reshape", ["Yt", "shape3"], ["Yr"]),
        n("Transpose", ["Yr"], ["ntf"], perm=[1, 0, 2]),
        n("MatMul", ["ntf", "fc_w"], ["fc"]), n("Add", ["fc", "fc_b"], ["logits"]),
        n("Softmax", ["logits"], ["probs"], axis=2),
    ]
    cst.append(init("axes2", np.array([2], np.int64)))
    return make_model(nodes, [vi("x", ["N", 3, height, "W"])], [vi("probs", ["N", "T", OUT])], cst)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    model = crnn()
    path = tmp_path_factory.mktemp("crnn") / "crnn.lstm"
    rep = convert_onnx(model, path, image_height=HEIGHT)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return lstm_infer.load(path), rep, sess, path


@pytest.mark.parametrize("width", [16, 37])
def test_run_matches_onnxruntime(converted, width):
    m, rep, sess, _ = converted
    assert rep.verify.ok and rep.verify.max_abs_error <= 1e-4, rep.verify
    x = np.random.default_rng(width).uniform(-1, 1, (3, 3, HEIGHT, width)).astype(np.float32)
    ref = sess.run(None, {"x": x})[0]
    y = m.run(x)
    assert y.shape == ref.shape == (3, width // 4, OUT)
    assert np.abs(y - ref).max() <= TOL
    # one image without the batch axis: (T, O)
    y1 = m.run(x[1])
    assert y1.shape == (width // 4, OUT) and np.abs(y1 - ref[1]).max() <= TOL


def test_prelude_structure(converted):
    m, rep, _, _ = converted
    pre = m.graph.prelude
    ops = [nd.op for nd in pre.nodes]
    # the BatchNormalization and the SE conv's bias Add were folded into their convs, and
    # Add 3 / Clip 0..6 / Mul / Div 6 became one hard_swish
    assert ops == ["Conv2d", "Act2d", "GlobalPool2d", "Conv2d", "Act2d", "Conv2d", "Act2d",
                   "Binary2d", "Conv2d", "Pool2d"], ops
    assert pre.nodes[1].attrs["kind"] == "hard_swish"
    assert m.input_shape == (3, HEIGHT, None)
    assert not m.streamable and m.provenance["onnx"]["prelude"]["cut"] == "pool"
    assert any("prelude" in w for w in rep.warnings)


def test_stream_is_refused_with_the_reason(converted):
    m = converted[0]
    for make in (m.stream, lambda: m.streams(2)):
        with pytest.raises(NotStreamableError, match="whole image"):
            make()


def test_input_errors(converted):
    m = converted[0]
    with pytest.raises(ValueError, match=r"expected images \(B, 3, 8, W\)"):
        m.run(np.zeros((2, 3, 9, 20), np.float32))
    with pytest.raises(ValueError, match="expected images"):
        m.run(np.zeros((20, 24), np.float32))
    with pytest.raises(ValueError, match="at least"):
        m.run(np.zeros((3, HEIGHT, 1), np.float32))
    with pytest.raises(ValueError, match="lengths"):
        m.run(np.zeros((1, 3, HEIGHT, 16), np.float32), lengths=[2])
    with pytest.raises(ValueError, match="NaN"):
        m.run(np.full((3, HEIGHT, 16), np.nan, np.float32))
    with pytest.raises(TypeError):
        m.run(np.array([["a"]]))


def test_height_must_be_given_when_the_file_leaves_it_open(tmp_path):
    with pytest.raises(ConversionError, match="image_height"):
        convert_onnx(crnn(), tmp_path / "m.lstm")


def test_fixed_height_needs_no_option(tmp_path):
    rep = convert_onnx(crnn(seed=1, height=HEIGHT), tmp_path / "m.lstm")
    assert rep.verify.ok, rep.verify


def _rewrite(src, dst, edit, version=None, monkeypatch=None):
    raw = fileformat.read_model(src)
    graph = json.loads(json.dumps(raw.graph))
    tensors = {k: np.array(v) for k, v in raw.tensors.items()}
    edit(graph, tensors)
    if version is not None:
        monkeypatch.setattr(fileformat, "PRELUDE_VERSION", version)
    fileformat.write_model(dst, graph, tensors, raw.provenance)


def test_file_is_version_2(converted):
    raw = fileformat.read_model(converted[3])
    assert "prelude" in raw.graph
    with open(converted[3], "rb") as f:
        f.read(8)
        assert b'"lstm_infer.format_version":"2"' in f.read(4096)


@pytest.mark.parametrize("edit,match", [
    (lambda g, t: g["prelude"]["nodes"][0]["attrs"].update(in_channels=4), "in_channels"),
    (lambda g, t: g["prelude"]["nodes"][0]["attrs"].update(kernel_size=[3, 5]), "weight 'W' has shape"),
    (lambda g, t: g["prelude"]["nodes"][0].update(op="Conv3d"), "unknown prelude op"),
    (lambda g, t: g["prelude"]["nodes"][1].update(inputs=["nowhere"]), "not produced"),
    (lambda g, t: g["prelude"]["nodes"][0]["attrs"].update(stride=[0, 1]), "stride"),
    (lambda g, t: g["prelude"]["nodes"][-1]["attrs"].update(kernel_size=[1, 2], stride=[1, 2]), "must be the graph's only input"),
    (lambda g, t: g["prelude"]["input"].update(height="tall"), "height"),
    (lambda g, t: g["prelude"].update(output="x"), "not produced by a prelude node"),
    (lambda g, t: g["prelude"]["nodes"][0]["attrs"].update(pads=[1, 1, 1]), "pads"),
])
def test_corrupt_prelude_node_is_rejected(converted, tmp_path, edit, match):
    dst = tmp_path / "bad.lstm"
    _rewrite(converted[3], dst, edit)
    with pytest.raises(ModelFormatError, match=match):
        lstm_infer.load(dst)


def test_prelude_in_a_version_1_file_is_refused(converted, tmp_path, monkeypatch):
    dst = tmp_path / "v1.lstm"
    _rewrite(converted[3], dst, lambda g, t: None, version=1, monkeypatch=monkeypatch)
    monkeypatch.undo()  # the writer was made to say version 1; the reader is this build's
    with pytest.raises(ModelFormatError, match="needs format version 2"):
        lstm_infer.load(dst)


def test_an_older_reader_refuses_the_file(converted, monkeypatch):
    monkeypatch.setattr(fileformat, "FORMAT_VERSION", 1)
    with pytest.raises(ModelFormatError, match="newer than this lstm-infer reads"):
        fileformat.read_model(converted[3])


def test_files_without_prelude_stay_version_1(tmp_path):
    from lstm_infer.builder import GraphBuilder
    b = GraphBuilder("x", 3)
    b.output(b.add("Linear", "fc", ["x"], {"in_features": 3, "out_features": 2},
                   {"W": np.ones((3, 2))}))
    b.save(tmp_path / "m.lstm")
    with open(tmp_path / "m.lstm", "rb") as f:
        f.read(8)
        assert b'"lstm_infer.format_version":"1"' in f.read(4096)
