"""Ahead-of-time compilation of every Numba kernel, behind `lstm-infer compile`.

A deployed device should never compile on first use (seconds of latency on a small
CPU), so this builds tiny models that together use every op kind and variant and calls
every entry point once; Numba's on-disk cache (`cache=True`) keeps the result.
"""
from __future__ import annotations

import os
import tempfile
import time
from typing import Iterable

import numpy as np

from ._firstuse import precompile_notice
from .builder import GraphBuilder
from .model import Model, load
from .ops import OPS
from .ops.embedding import example_inputs
from .quantize import quantize_file

__all__ = ["every_op_models", "exercise", "cache_dir", "cache_files", "compile_kernels"]


def every_op_models(directory: str) -> list[str]:
    """Write tiny random models into `directory` that together use every op kind and
    variant (tests/test_precompile.py checks this against the op registry); returns paths."""
    rng = np.random.default_rng(0)

    def u(*shape):
        return rng.uniform(-0.4, 0.4, size=shape).astype(np.float32)

    I = 4
    b = GraphBuilder("x", I)
    a = b.add("LSTM", "lstm", ["x"], {"input_size": I, "hidden_size": 8, "proj_size": 0,
                                      "reverse": False},
              {"W_ih": u(I, 32), "W_hh": u(8, 32), "bias": u(32)})
    p = b.add("LSTM", "lstm_proj", ["x"], {"input_size": I, "hidden_size": 8, "proj_size": 4,
                                           "reverse": False},
              {"W_ih": u(I, 32), "W_hh": u(4, 32), "W_hr": u(8, 4)})
    g1 = b.add("GRU", "gru_lbr", [p], {"input_size": 4, "hidden_size": 6,
                                       "linear_before_reset": True, "reverse": False},
               {"W_ih": u(4, 18), "W_hh": u(6, 18), "b_ih": u(18), "b_hh": u(18)})
    g2 = b.add("GRU", "gru_onnx", [p], {"input_size": 4, "hidden_size": 6,
                                        "linear_before_reset": False, "reverse": False},
               {"W_ih": u(4, 18), "W_hh": u(6, 18), "b_ih": u(18)})
    s = b.add("Add", "add", [g1, g2], {"size": 6})
    s = b.add("Mul", "mul", [s, g1], {"size": 6})
    c = b.add("Concat", "cat", [a, s], {"sizes": [8, 6]})
    c = b.add("LayerNorm", "ln", [c], {"size": 14, "eps": 1e-5}, {"weight": u(14) + 1, "bias": u(14)})
    c2 = b.add("LayerNorm", "ln_plain", [c], {"size": 14, "eps": 1e-5})
    r1 = b.add("RNN", "rnn_tanh", [c], {"input_size": 14, "hidden_size": 5,
                                        "nonlinearity": "tanh", "reverse": False},
               {"W_ih": u(14, 5), "W_hh": u(5, 5), "bias": u(5)})
    r2 = b.add("RNN", "rnn_relu", [c2], {"input_size": 14, "hidden_size": 5,
                                         "nonlinearity": "relu", "reverse": False},
               {"W_ih": u(14, 5), "W_hh": u(5, 5)})
    r = b.add("Concat", "cat2", [r1, r2], {"sizes": [5, 5]})
    for kind in ("tanh", "gelu", "softmax"):
        r = b.add("Activation", f"act_{kind}", [r], {"kind": kind, "size": 10})
    y = b.add("Linear", "fc", [r], {"in_features": 10, "out_features": 3},
              {"W": u(10, 3), "bias": u(3)})
    y2 = b.add("Linear", "fc_nobias", [a], {"in_features": 8, "out_features": 2}, {"W": u(8, 2)})
    # a GRU with a full panel of gates (3H >= linalg.PANEL): run() on a batch of it has its
    # own kernel (ops/gru.gru_batch), which the GRUs above are too small to reach
    g3 = b.add("GRU", "gru_panel", [p], {"input_size": 4, "hidden_size": 22,
                                         "linear_before_reset": True, "reverse": False},
               {"W_ih": u(4, 66), "W_hh": u(22, 66), "b_ih": u(66), "b_hh": u(66)})
    y3 = b.add("Linear", "fc_gru_panel", [g3], {"in_features": 22, "out_features": 2}, {"W": u(22, 2)})
    b.output(y)
    b.output(y2)
    b.output(y3)
    paths = [os.path.join(directory, "every_op.lstm")]
    b.save(paths[0], converter="lstm-infer compile")

    # Reverse-direction layers only run whole sequences (run()).
    b = GraphBuilder("x", I)
    f = b.add("LSTM", "fwd", ["x"], {"input_size": I, "hidden_size": 4, "proj_size": 0,
                                     "reverse": False, "output_cell": True},
              {"W_ih": u(I, 16), "W_hh": u(4, 16)})
    lr = b.add("LSTM", "bwd", ["x"], {"input_size": I, "hidden_size": 4, "proj_size": 0,
                                      "reverse": True}, {"W_ih": u(I, 16), "W_hh": u(4, 16),
                                                         "bias": u(16)})
    gr = b.add("GRU", "gru_bwd", ["x"], {"input_size": I, "hidden_size": 4, "reverse": True,
                                         "linear_before_reset": False},
               {"W_ih": u(I, 12), "W_hh": u(4, 12), "b_ih": u(12), "b_hh": u(12)})
    rr = b.add("RNN", "rnn_bwd", ["x"], {"input_size": I, "hidden_size": 4, "reverse": True,
                                         "nonlinearity": "relu"},
               {"W_ih": u(I, 4), "W_hh": u(4, 4), "bias": u(4)})
    fs = b.add("FirstStep", "bwd_final", [lr], {"size": 4})
    b.output(b.add("Concat", "bi", [f, lr, gr, rr, fs], {"sizes": [8, 4, 4, 4, 4]}))
    paths.append(os.path.join(directory, "bidirectional.lstm"))
    b.save(paths[-1], converter="lstm-infer compile")
    # int8 weights (the same kernels take another branch; run() goes through step programs)
    quantize_file(paths[0], os.path.join(directory, "int8.lstm"), "int8")
    paths.append(os.path.join(directory, "int8.lstm"))

    # ONNX cell semantics (gate activations, clip, coupled gates, peepholes) and the
    # per-step ops converters emit for ONNX graphs.
    b = GraphBuilder("x", I)
    acts3 = [{"kind": "hard_sigmoid", "alpha": 0.2, "beta": 0.5},
             {"kind": "scaled_tanh", "alpha": 1.0, "beta": 1.0}, {"kind": "softsign"}]
    lp = b.add("LSTM", "lstm_onnx", ["x"], {"input_size": I, "hidden_size": 4, "proj_size": 0,
                                            "reverse": False, "activations": acts3, "clip": 3.0,
                                            "input_forget": True},
               {"W_ih": u(I, 16), "W_hh": u(4, 16), "bias": u(16), "peephole": u(12)})
    gp = b.add("GRU", "gru_acts", [lp], {"input_size": 4, "hidden_size": 4, "reverse": False,
                                         "linear_before_reset": False, "clip": 2.0,
                                         "activations": [{"kind": "sigmoid"},
                                                         {"kind": "leaky_relu", "alpha": 0.1}]},
               {"W_ih": u(4, 12), "W_hh": u(4, 12), "b_ih": u(12), "b_hh": u(12)})
    rp = b.add("RNN", "rnn_acts", [gp], {"input_size": 4, "hidden_size": 4, "reverse": False,
                                         "activations": [{"kind": "affine", "alpha": 0.5,
                                                          "beta": 0.1}]},
               {"W_ih": u(4, 4), "W_hh": u(4, 4)})
    sc = b.add("Scale", "scale", [rp], {"size": 4}, {"scale": u(4) + 1, "shift": u(4)})
    bi = b.add("Binary", "binary", [sc, rp], {"size": 4, "kind": "max"})
    ga = b.add("Gather", "gather", [bi], {"in_size": 4, "out_size": 8},
               {"index": np.array([0, 1, 2, 3, 3, 2, -1, 0], np.float32)})
    cv = b.add("Conv1d", "conv", [ga], {"in_channels": 2, "in_length": 4, "out_channels": 2,
                                        "kernel_size": 3, "stride": 1, "dilation": 1,
                                        "pad_left": 1, "pad_right": 1, "groups": 1},
               {"W": u(2, 2, 3), "bias": u(2)})
    ln = b.add("LayerNorm", "ln_rows", [cv], {"size": 4, "rows": 2, "eps": 1e-5})
    sm = b.add("Activation", "softmax_groups", [ln], {"kind": "softmax", "size": 8, "axis_size": 4})
    rd = b.add("Reduce", "reduce", [sm], {"kind": "mean", "outer": 2, "axis": 4, "inner": 1})
    b.output(rd)
    paths.append(os.path.join(directory, "onnx_semantics.lstm"))
    b.save(paths[-1], converter="lstm-infer compile")

    # Token ids in: an Embedding lookup (exercise() feeds valid ids, ops/embedding.py).
    b = GraphBuilder("ids", 1)
    e = b.add("Embedding", "embedding", ["ids"], {"num_embeddings": 7, "embedding_dim": 4},
              {"table": u(7, 4)})
    b.output(b.add("Linear", "fc_tokens", [e], {"in_features": 4, "out_features": 2},
                   {"W": u(4, 2), "bias": u(2)}))
    paths.append(os.path.join(directory, "tokens.lstm"))
    b.save(paths[-1], converter="lstm-infer compile")
    paths += _example_models(directory, rng)
    return paths


def _example_models(directory: str, rng: np.random.Generator) -> list[str]:
    """One tiny model per op that brings its own `example` (ops/<op>.py), so a new op is
    precompiled without touching this file: its inputs become the model's inputs."""
    paths = []
    for name, op in sorted(OPS.items()):
        if op.example is None:
            continue
        attrs, weights = op.example(rng)
        sizes = op.spec(attrs).inputs
        b = GraphBuilder("in0", sizes[0])
        for k, n in enumerate(sizes[1:], 1):
            b.add_input(f"in{k}", n)
        b.output(b.add(name, name.lower(), [f"in{k}" for k in range(len(sizes))], attrs, weights))
        paths.append(os.path.join(directory, f"example_{name.lower()}.lstm"))
        b.save(paths[-1], converter="lstm-infer compile")
    return paths


def exercise(model: Model) -> None:
    """Call every entry point of a model once, so that every kernel it uses is compiled."""
    rng = np.random.default_rng(1)
    I = model.input_size
    X = example_inputs(model.graph, (5, I), rng)  # valid token ids for a token model
    model.run(X)
    model.run(X[None].repeat(2, axis=0))
    model.run(X[None].repeat(2, axis=0), lengths=np.array([5, 3]))
    if not model.streamable:
        return
    s = model.stream()
    s.step(X[0])
    s.step(X[1], out=np.zeros(model.output_size, np.float32))
    s.step_many(X)
    s.set_state(s.get_state())
    model.stream(on_nonfinite="propagate").step(X[0])
    pool = model.streams(2)
    pool.step(X[:2])
    pool.step(X[:2], out=np.zeros((2, model.output_size), np.float32))


def cache_dir() -> str:
    """Where Numba keeps the compiled kernels: NUMBA_CACHE_DIR if set, else beside them."""
    import numba
    configured = getattr(numba.config, "CACHE_DIR", "") or os.environ.get("NUMBA_CACHE_DIR", "")
    if configured:
        return os.path.abspath(configured)
    # beside the kernel sources: kernels/__pycache__ and ops/__pycache__ (see _cache.py)
    return os.path.dirname(os.path.abspath(__file__))


def cache_files(directory: str) -> set[str]:
    """Numba cache files (index and data) under `directory`, to count what compiling added."""
    found = set()
    for root, _, files in os.walk(directory):
        found.update(os.path.join(root, f) for f in files if f.endswith((".nbi", ".nbc")))
    return found


def compile_kernels(extra_models: Iterable[str] = ()) -> dict:
    """Compile (or load from the cache) every kernel; returns what `compile` prints."""
    where = cache_dir()
    before = cache_files(where)
    precompile_notice()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lstm-infer-compile-") as d:
        for path in every_op_models(d):
            exercise(load(path))
    for path in extra_models:
        exercise(load(path))
    seconds = time.perf_counter() - t0
    after = cache_files(where)
    return {"cache_dir": where, "seconds": seconds, "cache_files": len(after),
            "new_cache_files": len(after - before)}
