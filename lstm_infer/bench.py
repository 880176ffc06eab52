"""Latency measurement behind `lstm-infer bench`, usable from Python without the CLI.

`latency_stats` is deliberately engine-agnostic (any per-step callable), so that the
benchmarks can time ONNX Runtime or PyTorch the same way as lstm-infer; `bench_model`
builds the `bench` report from it; `format_bench` renders that report as text.
`max_abs_difference` is the matching accuracy side: how far two results disagree.
"""
from __future__ import annotations

import gc
import math
import os
import platform
import time
from typing import Callable, Sequence

import numpy as np

from .model import load
from .ops.embedding import example_inputs

__all__ = ["latency_stats", "chunk_stats", "bench_model", "format_bench", "environment",
           "max_abs_difference"]


def latency_stats(fn: Callable, inputs: Sequence, warmup: int = 100) -> dict:
    """Time fn(x) for each x in inputs (after `warmup` untimed calls), one call at a time.

    Generic on purpose: any per-step callable (lstm-infer, onnxruntime, PyTorch) can be
    measured the same way. The garbage collector is paused while timing so that a
    collection does not land in the tail percentiles.
    """
    for k in range(warmup):
        fn(inputs[k % len(inputs)])
    times = np.empty(len(inputs), np.int64)
    clock = time.perf_counter_ns
    gc_was = gc.isenabled()
    gc.disable()
    try:
        t_all = clock()
        for k, x in enumerate(inputs):
            t0 = clock()
            fn(x)
            times[k] = clock() - t0
        t_all = clock() - t_all
    finally:
        if gc_was:
            gc.enable()
    us = times / 1e3
    return {"median_us": float(np.median(us)), "p99_us": float(np.percentile(us, 99)),
            "max_us": float(us.max()), "mean_us": float(us.mean()),
            "steps_per_s": float(len(inputs) / (t_all / 1e9)) if t_all > 0 else math.inf}


def chunk_stats(fn: Callable[[np.ndarray], object], X: np.ndarray, repeats: int) -> dict:
    """Per-step cost of fn(X) over a whole chunk: best of `repeats` calls after one warm-up.

    The best (not the mean) call is kept: for a chunk the interesting number is what the
    kernel costs, not what a noisy neighbour on the machine added.
    """
    fn(X)  # warm-up
    best = math.inf
    clock = time.perf_counter_ns
    for _ in range(repeats):
        t0 = clock()
        fn(X)
        best = min(best, clock() - t0)
    per = best / 1e3 / X.shape[-2] / (X.shape[0] if X.ndim == 3 else 1)
    return {"per_step_us": float(per), "steps_per_s": float(1e6 / per) if per > 0 else math.inf}


def max_abs_difference(a: np.ndarray | dict, b: np.ndarray | dict) -> float:
    """Largest absolute difference between two results of the same model (one array, or
    a dict of named outputs as run() returns for a model with several)."""
    pairs = [(a[k], b[k]) for k in a] if isinstance(a, dict) else [(a, b)]
    return max(float(np.abs(p - q).max()) for p, q in pairs)


def numba_version() -> str:
    import numba
    return numba.__version__


def environment() -> dict:
    """Versions and machine, stored with every result so numbers can be compared honestly."""
    return {"python": platform.python_version(), "numpy": np.__version__,
            "numba": numba_version(), "machine": platform.machine(),
            "processor": platform.processor() or platform.machine()}


def bench_model(path: str, steps: int = 2000, warmup: int = 200, chunk: int = 256,
                seed: int = 0) -> dict:
    """The numbers `lstm-infer bench` prints, as a dict.

    Sections: `step` (Stream.step called from Python, per call), `step_many` (per step of
    a `chunk`-step call), `run` (per step of a stateless whole-sequence run). Comparisons
    against other engines are meant to be added as further sections of the same shape
    (e.g. `onnxruntime.step`), measured with latency_stats() on the same inputs.
    """
    if steps < 1 or warmup < 0 or chunk < 1:
        raise ValueError("steps and chunk must be >= 1 and warmup >= 0")
    t0 = time.perf_counter()
    m = load(path)
    load_ms = (time.perf_counter() - t0) * 1e3
    rng = np.random.default_rng(seed)
    X = example_inputs(m.graph, (steps, m.input_size), rng)  # token ids for a token model
    result = {
        "file": os.path.abspath(path), "input_size": m.input_size,
        "output_size": m.output_size, "parameters": m.graph.param_count(),
        "steps": steps, "warmup": warmup, "chunk": chunk, "streamable": m.streamable,
        "load_ms": load_ms,
        "environment": environment(),
    }
    if m.streamable:
        s = m.stream()
        t0 = time.perf_counter()
        s.step(X[0])
        result["first_step_ms"] = (time.perf_counter() - t0) * 1e3
        s.reset()
        result["step"] = latency_stats(s.step, list(X), warmup)
        s.reset()
        result["step_many"] = {"chunk": chunk, **chunk_stats(
            s.step_many, np.ascontiguousarray(X[:chunk] if steps >= chunk else
                                              np.resize(X, (chunk, m.input_size))), 5)}
    result["run"] = {"seq_len": steps, **chunk_stats(m.run, X, 3)}
    return result


def format_bench(r: dict) -> str:
    """The text report of `lstm-infer bench` for a bench_model() result."""
    lines = [f"lstm-infer bench: {r['file']} (input {r['input_size']} -> output "
             f"{r['output_size']}, {r['parameters']:,} parameters)",
             f"  load {r['load_ms']:.1f} ms" + (f", first step {r['first_step_ms']:.2f} ms"
                                                if "first_step_ms" in r else "")]
    if "step" in r:
        st = r["step"]
        lines.append(f"  {'stream.step':<18} median {st['median_us']:8.2f} µs  p99 "
                     f"{st['p99_us']:8.2f} µs  max {st['max_us']:9.2f} µs  "
                     f"{st['steps_per_s']:12,.0f} steps/s  ({r['steps']} steps after "
                     f"{r['warmup']} warm-up)")
        sm = r["step_many"]
        lines.append(f"  {'step_many(%d)' % sm['chunk']:<18} {sm['per_step_us']:8.3f} µs/step"
                     f"{'':39}{sm['steps_per_s']:12,.0f} steps/s")
    else:
        lines.append("  (model cannot stream: only run() measured)")
    rn = r["run"]
    lines.append(f"  {'run(T=%d)' % rn['seq_len']:<18} {rn['per_step_us']:8.3f} µs/step"
                 f"{'':39}{rn['steps_per_s']:12,.0f} steps/s")
    return "\n".join(lines)
