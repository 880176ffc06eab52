"""lstm_infer.bench used directly (the `bench` command is tested in test_cli.py).

No wall-clock thresholds: only the shape of the results and their internal ordering."""
from __future__ import annotations

import ast
import gc

import numpy as np
import pytest

import lstm_infer.bench as bench_mod
from builders import stacked
from lstm_infer.bench import (bench_model, chunk_stats, environment, format_bench, latency_stats,
                              max_abs_difference)

STEP_KEYS = {"median_us", "p99_us", "max_us", "mean_us", "steps_per_s"}


def test_latency_stats_on_a_fake_step():
    calls = []

    def fn(x):
        calls.append(x)
        return sum(range(50))

    inputs = list(range(40))
    r = latency_stats(fn, inputs, warmup=7)
    assert set(r) == STEP_KEYS
    assert len(calls) == 7 + 40
    assert calls[7:] == inputs  # timed calls see every input once, in order
    assert 0 < r["median_us"] <= r["p99_us"] <= r["max_us"]
    assert r["mean_us"] <= r["max_us"] and r["steps_per_s"] > 0
    assert all(isinstance(v, float) for v in r.values())


def test_latency_stats_restores_the_garbage_collector():
    assert gc.isenabled()
    latency_stats(lambda x: x, [1, 2, 3], warmup=0)
    assert gc.isenabled()
    gc.disable()
    try:
        latency_stats(lambda x: x, [1, 2, 3], warmup=0)
        assert not gc.isenabled()  # was off: left off
    finally:
        gc.enable()

    def boom(x):
        raise RuntimeError("step failed")

    with pytest.raises(RuntimeError):
        latency_stats(boom, [1], warmup=0)
    assert gc.isenabled()


def test_chunk_stats_counts_steps_of_2d_and_3d_chunks():
    seen = []
    r = chunk_stats(lambda X: seen.append(X.shape), np.zeros((10, 3), np.float32), repeats=4)
    assert len(seen) == 1 + 4  # one warm-up, then the timed repeats
    assert set(r) == {"per_step_us", "steps_per_s"}
    assert r["per_step_us"] > 0
    assert r["steps_per_s"] == pytest.approx(1e6 / r["per_step_us"])
    r3 = chunk_stats(lambda X: None, np.zeros((4, 10, 3), np.float32), repeats=1)
    assert r3["per_step_us"] > 0


def test_bench_model_streamable(tmp_path):
    path = str(tmp_path / "m.lstm")
    stacked(path, I=3, H=5, out=2)
    r = bench_model(path, steps=30, warmup=2, chunk=8)
    assert (r["input_size"], r["output_size"], r["steps"], r["warmup"], r["chunk"]) == (3, 2, 30, 2, 8)
    assert r["streamable"] is True
    assert set(r["step"]) == STEP_KEYS
    assert r["step"]["median_us"] <= r["step"]["p99_us"] <= r["step"]["max_us"]
    assert r["step_many"]["chunk"] == 8 and r["step_many"]["per_step_us"] > 0
    assert r["run"]["seq_len"] == 30 and r["run"]["per_step_us"] > 0
    assert r["load_ms"] > 0 and r["first_step_ms"] > 0
    assert set(r["environment"]) == {"python", "numpy", "numba", "machine", "processor"}
    r = bench_model(path, steps=5, warmup=0, chunk=16)  # chunk longer than the data: tiled
    assert r["step_many"]["chunk"] == 16

    text = format_bench(r)
    assert text.splitlines()[0].startswith("lstm-infer bench: ")
    for frag in ("stream.step", "median", "p99", "step_many(16)", "run(T=5)", "steps/s"):
        assert frag in text, frag


def test_bench_model_not_streamable(tmp_path):
    path = str(tmp_path / "bi.lstm")
    stacked(path, I=3, H=4, bidirectional=True)
    r = bench_model(path, steps=12, warmup=1, chunk=4)
    assert r["streamable"] is False
    assert "step" not in r and "step_many" not in r and "first_step_ms" not in r
    assert r["run"]["per_step_us"] > 0
    assert "cannot stream" in format_bench(r)


@pytest.mark.parametrize("kw", [{"steps": 0}, {"warmup": -1}, {"chunk": 0}])
def test_bench_model_rejects_bad_counts(tmp_path, kw):
    with pytest.raises(ValueError, match=">= 1"):
        bench_model(str(tmp_path / "never-opened.lstm"), **kw)


def test_max_abs_difference():
    a = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    assert max_abs_difference(a, a) == 0.0
    assert max_abs_difference(a, a + np.array([[0, -0.5], [0.25, 0]], np.float32)) == 0.5
    da = {"y": a, "z": np.zeros(3, np.float32)}
    db = {"y": a, "z": np.array([0, 2, 0], np.float32)}
    assert max_abs_difference(da, db) == 2.0


def test_environment_names_versions():
    env = environment()
    assert env["numpy"] == np.__version__
    assert all(isinstance(v, str) and v for v in env.values())


def test_imports_neither_click_nor_converters():
    tree = ast.parse(open(bench_mod.__file__, encoding="utf-8").read())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in names if m.split(".")[0] in ("click", "converters")}
