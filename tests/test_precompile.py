"""lstm_infer.precompile used directly (`lstm-infer compile` end to end, with a fresh
Numba cache in a subprocess, is tested in test_cli.py)."""
from __future__ import annotations

import ast
import os

import numba

import lstm_infer
import lstm_infer.precompile as precompile
from builders import stacked
from lstm_infer.precompile import cache_dir, cache_files, compile_kernels, every_op_models, exercise


def test_compile_models_cover_every_op(tmp_path):
    """When an op is added to the format, `compile` must learn to exercise it."""
    from lstm_infer.ops import OPS as OP_SPECS  # the op registry, read at test time

    ops, variants = set(), set()
    for path in every_op_models(str(tmp_path)):
        for node in lstm_infer.load(path).graph.nodes:
            ops.add(node.op)
            a = node.attrs
            if node.op == "LSTM":
                variants.add(("LSTM", "proj" if a.get("proj_size") else "plain"))
            elif node.op == "GRU":
                variants.add(("GRU", a.get("linear_before_reset", True)))
            elif node.op == "RNN" and "activations" not in a:
                variants.add(("RNN", a.get("nonlinearity", "tanh")))
            if node.is_recurrent and a.get("reverse"):
                variants.add(("reverse", node.op))
    assert ops == set(OP_SPECS), set(OP_SPECS) ^ ops
    assert {("LSTM", "proj"), ("LSTM", "plain"), ("GRU", True), ("GRU", False), ("RNN", "tanh"),
            ("RNN", "relu"), ("reverse", "LSTM"), ("reverse", "GRU"), ("reverse", "RNN")} <= variants


def test_every_op_models_load_and_include_int8_and_a_non_streamable_one(tmp_path):
    paths = every_op_models(str(tmp_path))
    assert all(os.path.dirname(p) == str(tmp_path) and os.path.isfile(p) for p in paths)
    models = [lstm_infer.load(p, warmup=False) for p in paths]
    assert any(m.dtype == "int8" for m in models)
    assert any(not m.streamable for m in models) and any(m.streamable for m in models)


class _Spy:
    """Stands in for a Model: records which entry points exercise() calls."""

    def __init__(self, model):
        self._m, self.calls = model, []
        self.input_size, self.output_size = model.input_size, model.output_size
        self.streamable = model.streamable

    def __getattr__(self, name):
        attr = getattr(self._m, name)
        if name in ("run", "stream", "streams"):
            return lambda *a, **k: (self.calls.append(name), attr(*a, **k))[1]
        return attr


def test_exercise_calls_every_entry_point(tmp_path):
    stacked(str(tmp_path / "m.lstm"), I=3, H=4)
    spy = _Spy(lstm_infer.load(tmp_path / "m.lstm"))
    exercise(spy)
    assert {"run", "stream", "streams"} <= set(spy.calls)

    stacked(str(tmp_path / "bi.lstm"), I=3, H=4, bidirectional=True)
    spy = _Spy(lstm_infer.load(tmp_path / "bi.lstm"))
    exercise(spy)  # run() only: a non-streamable model has no stream entry points
    assert set(spy.calls) == {"run"}


def test_cache_dir_follows_numba_config(monkeypatch, tmp_path):
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path), raising=False)
    assert cache_dir() == str(tmp_path)
    monkeypatch.setattr(numba.config, "CACHE_DIR", "", raising=False)
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    here = os.path.dirname(os.path.abspath(lstm_infer.__file__))
    assert cache_dir() == here  # kernels/__pycache__ and ops/__pycache__ below it


def test_cache_files_counts_numba_index_and_data_files(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.nbi", "sub/b.nbc", "c.pyc", "sub/d.txt"):
        (tmp_path / name).write_bytes(b"")
    assert cache_files(str(tmp_path)) == {str(tmp_path / "a.nbi"), str(tmp_path / "sub" / "b.nbc")}
    assert cache_files(str(tmp_path / "missing")) == set()


def test_compile_kernels_reports_and_exercises_extra_models(monkeypatch, tmp_path):
    built, exercised = [], []

    def one_model(directory):  # the real set is covered above and by test_cli's compile test
        path = os.path.join(directory, "tiny.lstm")
        stacked(path, I=2, H=3)
        built.append(path)
        return [path]

    monkeypatch.setattr(precompile, "every_op_models", one_model)
    monkeypatch.setattr(precompile, "exercise", lambda m: exercised.append(m.path))
    extra = str(tmp_path / "extra.lstm")
    stacked(extra, I=3, H=4)
    r = compile_kernels([extra])
    assert set(r) == {"cache_dir", "seconds", "cache_files", "new_cache_files"}
    assert r["cache_dir"] == cache_dir() and r["seconds"] > 0
    assert 0 <= r["new_cache_files"] <= r["cache_files"]
    assert [os.path.basename(p) for p in exercised] == ["tiny.lstm", "extra.lstm"]
    assert not os.path.exists(built[0])  # built in a temporary directory, removed after


def test_imports_neither_click_nor_converters():
    tree = ast.parse(open(precompile.__file__, encoding="utf-8").read())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in names if m.split(".")[0] in ("click", "converters")}


def test_every_op_models_reach_the_batch_kernels(tmp_path, monkeypatch):
    """run() on a batch has kernels of its own for LSTM and GRU (ops/lstm.lstm_batch,
    ops/gru.gru_batch, with AVX-512): the compile models must reach them, or the first
    batched run() after `lstm-infer compile` still compiles."""
    from lstm_infer.kernels.linalg import WIDE_VECTORS
    from lstm_infer.ops import gru, lstm
    calls = set()
    for mod, name in ((lstm, "lstm_batch"), (gru, "gru_batch")):
        kernel = getattr(mod, name)
        monkeypatch.setattr(mod, name, lambda *a, _k=kernel, _n=name: calls.add(_n) or _k(*a))
    for path in every_op_models(str(tmp_path)):
        exercise(lstm_infer.load(path))
    assert calls == ({"lstm_batch", "gru_batch"} if WIDE_VECTORS else set())
