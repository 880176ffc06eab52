"""lstm_infer.summary used directly: describe() (`inspect --json`) and format_summary()
(`print(model)`), both built from describe_node()."""
from __future__ import annotations

import ast
import os
from types import SimpleNamespace

import numpy as np
import pytest

import lstm_infer
import lstm_infer.summary as summary_mod
from builders import _u, add_recurrent, stacked
from lstm_infer.builder import GraphBuilder
from lstm_infer.precompile import every_op_models
from lstm_infer.quantize import quantize_file
from lstm_infer.summary import describe, describe_node, format_details, format_summary


def _with_source(path, tmp_path):
    """GRU (reset before) + RNN(relu) with initial state, saved with a source file."""
    rng = np.random.default_rng(3)
    b = GraphBuilder("x", 3)
    v = add_recurrent(b, rng, "GRU", "gru", "x", 3, 4, lbr=False, init_state=True)
    v = add_recurrent(b, rng, "RNN", "rnn", v, 4, 5, nonlinearity="relu")
    v = b.add("Activation", "act", [v], {"kind": "tanh", "size": 5})
    b.output(b.add("Linear", "fc", [v], {"in_features": 5, "out_features": 2},
                   {"W": _u(rng, (5, 2), 0.5)}))
    src = tmp_path / "net.onnx"
    src.write_bytes(b"not really onnx")
    b.save(path, source=str(src), converter="test")
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("summary")
    paths = {"lstm_proj": str(d / "lstm_proj.lstm"), "bi": str(d / "bi.lstm")}
    stacked(paths["lstm_proj"], I=3, H=5, layers=2, proj=2, init_state=True)
    stacked(paths["bi"], op="GRU", I=3, H=4, bidirectional=True)
    paths["source"] = _with_source(str(d / "source.lstm"), d)
    for dt in ("fp16", "int8"):
        paths[dt] = str(d / f"{dt}.lstm")
        quantize_file(paths["lstm_proj"], paths[dt], dt)
    (d / "every_op").mkdir()
    for p in every_op_models(str(d / "every_op")):
        paths[os.path.basename(p)] = p
    assert len(set(paths.values())) == len(paths)
    return {k: lstm_infer.load(p, warmup=False) for k, p in paths.items()}


def test_format_summary_is_model_summary(models):
    for name, m in models.items():
        assert format_summary(m) == m.summary(), name


def test_format_summary_without_path_or_file_size(models):
    m = models["source"]
    bare = SimpleNamespace(**{k: getattr(m, k) for k in (
        "graph", "input_size", "output_size", "dtype", "streamable", "provenance",
        "compression_ratio")}, path=None, file_size=None)
    text = format_summary(bare)
    assert text.startswith("lstm-infer model: input 3 -> output 2, ")
    assert "bytes" not in text.splitlines()[0]
    assert text.splitlines()[1:] == m.summary().splitlines()[1:]


def test_layer_descriptions(models):
    def texts(name):
        g = models[name].graph
        return {n.name: describe_node(g, n)["text"] for n in g.nodes}

    t = texts("lstm_proj")
    assert t["lstm0"] == "LSTM 3->5 proj 2" and t["lstm1"] == "LSTM 2->5 proj 2"
    t = texts("bi")
    assert t["gru0"] == "GRU 3->4" and t["gru0_reverse"] == "GRU 3->4 reverse"
    assert t["cat0"] == "Concat 8"
    t = texts("source")
    assert t["gru"] == "GRU 3->4 (reset before)" and t["rnn"] == "RNN(relu) 4->5"
    assert t["act"] == "tanh" and t["fc"] == "Linear 5->2"
    assert texts("bidirectional.lstm")["bwd_final"].startswith("FirstStep 4 ")
    text = format_summary(models["source"])
    assert "  source: net.onnx via test" in text and "streamable: yes" in text
    assert "streamable: no (needs whole sequences: gru0_reverse)" in format_summary(models["bi"])
    assert "dtype fp16" in format_summary(models["fp16"])
    assert "smaller than fp32" not in format_summary(models["lstm_proj"])
    assert "x smaller than fp32)" in format_summary(models["int8"])


def test_describe(models):
    m = models["lstm_proj"]
    info = describe(m)
    assert info["parameters"] == m.graph.param_count() == sum(l["parameters"] for l in info["layers"])
    assert all("text" not in layer for layer in info["layers"])
    lstm0 = info["layers"][0]
    assert list(lstm0) == ["name", "op", "inputs", "output", "output_size", "attrs", "parameters",
                           "initial_state"]
    assert lstm0["initial_state"] == ["c0", "h0"] and lstm0["output_size"] == 2
    assert info["state"][0] == {"name": "lstm0.h", "size": 2}
    assert info["streamable"] is True and info["reverse_layers"] == []
    assert describe(models["bi"])["reverse_layers"] == ["gru0_reverse"]
    assert describe(models["int8"])["dtype"] == "int8"


def test_format_details(models):
    lines = format_details(describe(models["lstm_proj"])).splitlines()
    assert lines[0].startswith("  state: lstm0.h (2), lstm0.c (5)")
    assert lines[1].startswith("  provenance: ")
    assert not any(l.startswith(("  outputs:", "  weights:")) for l in lines)
    text = format_details(describe(models["int8"]))
    assert "  weights: lstm0.W_ih int8" in text and "others fp32" in text
    two = describe(models["every_op.lstm"])
    assert format_details(two).splitlines()[0].startswith("  outputs: fc.out (3), fc_nobias.out (2)")
    assert "  state: none" in format_details(dict(describe(models["bi"]), state=[]))


def test_imports_neither_model_nor_click():
    """summary.py takes the model duck-typed: importing model.py would be a cycle, since
    Model.summary() calls format_summary(); it reads the op registry for layer texts."""
    tree = ast.parse(open(summary_mod.__file__, encoding="utf-8").read())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {("." * n.level) + (n.module or "") for n in ast.walk(tree)
              if isinstance(n, ast.ImportFrom)}
    assert names <= {"__future__", "os", "typing", ".graph", ".ops"}, names
