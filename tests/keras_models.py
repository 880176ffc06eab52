"""Helpers for the Keras importer tests: build models with Keras 3 (torch backend, no
TensorFlow), give them random weights, save them, convert them with verification off,
and compare the `.lstm` file with Keras's own `predict()` independently of the
importer's verifier.

Tolerance: max abs error TOL = 1e-5 in float32 on unit-scale inputs and weights (weights
uniform in [-0.6, 0.6], inputs standard normal), the same bound as the other importers'
tests: the engine's cells use a tanh approximation with max abs error 3.5e-7 per call.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")  # Keras 3 without TensorFlow
keras = pytest.importorskip("keras", reason="the Keras importer tests need keras (pip install "
                            "keras h5py; it runs on the torch backend without TensorFlow)")
pytest.importorskip("h5py", reason="the Keras importer reads files with h5py (pip install h5py)")

import lstm_infer  # noqa: E402
from converters import convert_keras  # noqa: E402

TOL = 1e-5
CHUNKS = (1, 4, 2, 7, 3, 16, 5)
LENGTHS = (1, 6, 17)


def randomize(model, seed: int = 0, scale: float = 0.6):
    """Every weight uniform in [-scale, scale] (so biases are not zero and gate or bias
    orders matter); BatchNormalization variances in [0.5, 1.5]."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        name = getattr(v, "path", v.name)
        if "variance" in name:
            arr = rng.uniform(0.5, 1.5, v.shape)
        else:
            arr = rng.uniform(-scale, scale, v.shape)
        v.assign(arr.astype(np.float32))
    return model


def save_and_convert(model, tmp_path, fmt: str = "keras", **kw):
    """Save `model` as model.<fmt>, convert it without verification; (path, Model, report)."""
    src = str(tmp_path / f"model.{fmt}")
    model.save(src)
    out = str(tmp_path / f"model_{fmt}.lstm")
    report = convert_keras(src, out, verify=False, **kw)
    return src, lstm_infer.load(out), report


def data(shape, seed: int = 0, vocab: int | None = None, low: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if vocab:
        return rng.integers(low, vocab, shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def predict(model, X) -> np.ndarray:
    return np.asarray(model.predict(X, verbose=0), np.float64)


def check(model, m, step_shape: tuple, lengths=LENGTHS, B: int = 3, vocab: int | None = None,
          low: int = 0, prefix: bool = True, tol: float = TOL) -> float:
    """The file `m` against Keras predict(): whole sequences; for a last-step model the
    last row and (with `prefix`) every earlier row against predict() on the prefix; and,
    when the file streams, step() one step at a time and step_many() in chunks with the
    state carried, equal to run(). Returns the largest error seen."""
    worst = 0.0
    for k, T in enumerate(lengths):
        X = data((B, T, *step_shape), seed=k, vocab=vocab, low=low)
        flat = X.reshape(B, T, -1)
        want = predict(model, X.astype(np.int32) if vocab else X)
        ours = m.run(flat)
        if want.ndim >= 3 and want.shape[1] == T and ours.shape[-1] == int(np.prod(want.shape[2:])):
            e = err(ours, want.reshape(B, T, -1))
        else:  # a last-step output: row t is the result for X[:, :t+1]
            e = err(ours[:, -1], want.reshape(B, -1))
            for t in (range(T - 1) if prefix else ()):
                Xp = X[:, :t + 1]
                e = max(e, err(ours[:, t], predict(model, Xp.astype(np.int32) if vocab else Xp)
                               .reshape(B, -1)))
        assert e < tol, f"T={T}: max abs error {e:.3g} against Keras predict()"
        worst = max(worst, e)
        if m.streamable:
            check_stream(m, flat, ours)
    return worst


def check_stream(m, flat: np.ndarray, ours: np.ndarray) -> None:
    """stream().step per step and step_many in chunks reproduce run() (state carried)."""
    for b in range(flat.shape[0]):
        s = m.stream()
        rows = np.stack([s.step(x) for x in flat[b]])
        assert err(rows, ours[b]) < TOL
        s.reset()
        parts, pos, k = [], 0, b
        while pos < flat.shape[1]:
            n = CHUNKS[k % len(CHUNKS)]
            parts.append(s.step_many(flat[b, pos:pos + n]))
            pos, k = pos + n, k + 1
        assert err(np.concatenate(parts), ours[b]) < TOL
