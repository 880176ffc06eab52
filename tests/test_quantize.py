"""fp16 / int8 weights: validation, accuracy against fp32, exactness between paths, size."""
import json
import os

import numpy as np
import pytest

import lstm_infer
from lstm_infer.quantize import quantize_file, quantize_int8
from builders import stacked


def test_quantize_int8_per_column():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((7, 5)).astype(np.float32) * np.array([1, 10, 0.01, 0, 3], np.float32)
    q, s = quantize_int8(W)
    assert q.dtype == np.int8 and s.shape == (5,) and s[3] == 0
    assert np.abs(q).max() <= 127
    err = np.abs(q * s - W)
    assert (err <= s / 2 + 1e-7).all()  # round-to-nearest: at most half a step per column


@pytest.mark.parametrize("op,kw", [("LSTM", {}), ("LSTM", {"proj": 4}), ("GRU", {}),
                                   ("GRU", {"lbr": False}), ("RNN", {})])
@pytest.mark.parametrize("dtype,tol", [("fp16", 2e-3), ("int8", 2e-2)])
def test_compressed_models_track_fp32(tmp_path, op, kw, dtype, tol):
    stacked(tmp_path / "f.lstm", op, 6, 24, layers=2, **kw)
    quantize_file(tmp_path / "f.lstm", tmp_path / "q.lstm", dtype)
    f, q = lstm_infer.load(tmp_path / "f.lstm"), lstm_infer.load(tmp_path / "q.lstm")
    X = np.random.default_rng(1).standard_normal((400, 6)).astype(np.float32)
    ref, got = f.run(X), q.run(X)
    assert np.abs(got - ref).max() <= tol
    s = q.stream()
    many = s.step_many(X)
    s.reset()
    steps = np.stack([s.step(x) for x in X])
    assert np.array_equal(many, steps)
    assert np.abs(many - got).max() <= 1e-5
    pool = q.streams(3).step(np.stack([X[0]] * 3))
    assert np.array_equal(pool[1], steps[0])
    if dtype == "int8":
        assert any(w.dtype == np.int8 for n in q.graph.nodes for w in n.weights.values())


def test_batched_run_with_lengths_int8(tmp_path):
    stacked(tmp_path / "f.lstm", "GRU", 3, 16, layers=2, bidirectional=True)
    quantize_file(tmp_path / "f.lstm", tmp_path / "q.lstm", "int8")
    q = lstm_infer.load(tmp_path / "q.lstm")
    X = np.random.default_rng(2).standard_normal((3, 30, 3)).astype(np.float32)
    Y = q.run(X, lengths=[30, 12, 1])
    for b, n in enumerate([30, 12, 1]):
        assert np.abs(Y[b, :n] - q.run(X[b, :n])).max() <= 1e-6
    f = lstm_infer.load(tmp_path / "f.lstm")
    assert np.abs(q.run(X) - f.run(X)).max() <= 2e-2


def test_int8_is_about_four_times_smaller(tmp_path):
    stacked(tmp_path / "f.lstm", "LSTM", 64, 256, layers=2)
    quantize_file(tmp_path / "f.lstm", tmp_path / "q.lstm", "int8")
    quantize_file(tmp_path / "f.lstm", tmp_path / "h.lstm", "fp16")
    f32, i8, f16 = (os.path.getsize(tmp_path / n) for n in ("f.lstm", "q.lstm", "h.lstm"))
    assert 3.7 < f32 / i8 < 4.0 and 1.9 < f32 / f16 < 2.0


def _strip_scales(path):
    import struct
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    g = json.loads(header["__metadata__"]["lstm_infer.graph"])
    for node in g["nodes"]:
        node["weights"] = {r: t for r, t in node["weights"].items() if not r.endswith(".scale")}
    return g


def test_scales_required_and_checked(tmp_path):
    from lstm_infer.fileformat import read_model
    from lstm_infer.graph import parse_graph
    stacked(tmp_path / "f.lstm", "LSTM", 3, 8)
    quantize_file(tmp_path / "f.lstm", tmp_path / "q.lstm", "int8")
    raw = read_model(tmp_path / "q.lstm")
    with pytest.raises(lstm_infer.ModelFormatError, match="needs per-column scales"):
        parse_graph(_strip_scales(tmp_path / "q.lstm"), raw.tensors)
    bad = dict(raw.tensors)
    key = next(k for k in bad if k.endswith(".scale"))
    bad[key] = np.full_like(bad[key], np.nan)
    with pytest.raises(lstm_infer.ModelFormatError, match="finite"):
        parse_graph(raw.graph, bad)
    with pytest.raises(ValueError, match="already compressed"):
        quantize_file(tmp_path / "q.lstm", tmp_path / "qq.lstm", "int8")


def test_cli_quantize_and_inspect(tmp_path):
    from click.testing import CliRunner

    from lstm_infer.cli import cli
    stacked(tmp_path / "f.lstm", "LSTM", 4, 16)
    r = CliRunner().invoke(cli, ["quantize", str(tmp_path / "f.lstm"), "-o", str(tmp_path / "q.lstm"),
                                 "--dtype", "int8"])
    assert r.exit_code == 0, r.output
    assert "max abs difference" in r.output
    r = CliRunner().invoke(cli, ["inspect", "--json", str(tmp_path / "q.lstm")])
    info = json.loads(r.output)
    assert info["dtype"] == "int8" and info["weight_dtypes"]["lstm0.W_ih"] == "int8"
    assert info["weight_dtypes"]["lstm0.bias"] == "fp32" and info["compression_ratio"] > 2
    assert info["provenance"]["weights_dtype"] == "int8"


@pytest.mark.parametrize("dtype", ["fp16", "int8"])
def test_convert_torch_with_dtype(tmp_path, dtype):
    torch = pytest.importorskip("torch")
    import converters
    torch.manual_seed(0)
    module = torch.nn.GRU(5, 24, num_layers=2, batch_first=True)
    report = converters.convert_torch(module, tmp_path / "m.lstm", example_input=torch.randn(1, 12, 5),
                                      dtype=dtype)
    assert report.verify is not None and report.verify.ok  # the fp32 conversion
    assert any(f"{dtype} weights: max abs difference" in w for w in report.warnings)
    m = lstm_infer.load(tmp_path / "m.lstm")
    assert m.dtype == dtype
    x = torch.randn(1, 300, 5)
    with torch.no_grad():
        ref = module(x)[0][0].numpy()
    assert np.abs(m.run(x[0].numpy()) - ref).max() <= (2e-3 if dtype == "fp16" else 2e-2)
    assert not (tmp_path / "m.lstm.fp32.tmp").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.lstm"]
