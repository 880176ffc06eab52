"""Numerical verification of a `.lstm` file against its Keras source, with Keras itself.

Keras 3 runs without TensorFlow on the torch or jax backend; when no backend is chosen
(KERAS_BACKEND unset) and TensorFlow is not installed, the first installed of torch and
jax is used (Keras's own default, tensorflow, would fail to import). The model is loaded
with `keras.saving.load_model(..., compile=False)` and called on the same unit-scale
random inputs as the file (token ids for an Embedding model), batch of 2, lengths 1, 5
and 33 (or the model's fixed length):

* `run()` on the batch against Keras on the whole sequences. For an output without a
  time axis (return_sequences=False) the last row is compared with Keras's output and,
  unless it goes through a reverse-direction layer, earlier rows t with Keras on the
  prefix X[:, :t+1] (prefix semantics);
* when the file streams: `stream().step()` for the first steps, then `step_many()` over
  chunks of varying sizes with the state carried, against the same Keras results.

Stateful layers are reset before each Keras call, so every call starts from zeros.
"""
from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np

from ..errors import ConversionError
from ..report import VerifyReport

__all__ = ["import_keras", "verify_against_keras"]

_CHUNKS = (1, 2, 5, 3, 8, 13, 4)
NEEDS_KERAS = ("verifying against the Keras model needs keras installed (pip install keras; "
               "it runs without TensorFlow with KERAS_BACKEND=torch or jax), or convert with "
               "verify=False / --no-verify to skip the check")


def import_keras():
    """keras, with a working backend (module docstring); ConversionError when missing."""
    if "keras" not in sys.modules and not os.environ.get("KERAS_BACKEND"):
        if importlib.util.find_spec("tensorflow") is None:
            for backend in ("torch", "jax"):
                if importlib.util.find_spec(backend) is not None:
                    os.environ["KERAS_BACKEND"] = backend
                    break
    try:
        import keras
    except ImportError as e:
        raise ConversionError(f"{NEEDS_KERAS} ({e})") from e
    if not hasattr(keras, "saving") or int(keras.__version__.split(".")[0]) < 3:
        raise ConversionError(f"verification needs Keras 3 (found keras {keras.__version__})")
    return keras


class _Reference:
    """The Keras model as a function of numpy inputs (B, T, *input_shape)."""

    def __init__(self, src: str, spec):
        keras = import_keras()
        self.keras, self.spec = keras, spec
        try:
            self.model = keras.saving.load_model(src, compile=False)
        except Exception as e:
            raise ConversionError(f"Keras could not load {src} for verification: "
                                  f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                                  " (verify=False / --no-verify skips the check)") from e
        layers = (self.model._flatten_layers() if hasattr(self.model, "_flatten_layers")
                  else self.model.layers)
        self.stateful = [l for l in layers if getattr(l, "stateful", False)
                         and hasattr(l, "reset_state")]

    def __call__(self, X: np.ndarray) -> list[np.ndarray]:
        for layer in self.stateful:
            layer.reset_state()
        x = X.astype(np.int32) if self.spec.ids else X
        y = self.model(x, training=False)
        ys = y if isinstance(y, (list, tuple)) else [y]
        out = []
        for o, yk in zip(self.spec.outputs, ys):
            a = np.asarray(self.keras.ops.convert_to_numpy(yk), dtype=np.float64)
            out.append(a.reshape(a.shape[0], a.shape[1], -1) if o.time else
                       a.reshape(a.shape[0], -1))
        return out


def _err(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    if a.shape != b.shape:
        raise ConversionError(f"shape mismatch comparing with Keras: {a.shape} vs {b.shape}")
    d = float(np.max(np.abs(a.astype(np.float64) - b))) if a.size else 0.0
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    return d, d / max(scale, 1e-12)


def _prefix_points(T: int) -> list[int]:
    return list(range(T - 1)) if T <= 12 else sorted({0, 1, T // 4, T // 2, (3 * T) // 4, T - 2})


def _inputs(spec, rng, B: int, T: int) -> np.ndarray:
    shape = (B, T, *spec.input_shape)
    if spec.ids:
        return rng.integers(spec.ids_low, max(spec.vocab, spec.ids_low + 1), shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def _as_list(y, names) -> list[np.ndarray]:
    return [y[n] for n in names] if isinstance(y, dict) else [y]


def verify_against_keras(lstm_path: str, src: str, spec, options: dict | None = None,
                         inputs: np.ndarray | None = None) -> VerifyReport:
    """Compare the file with the Keras model (module docstring); returns the report."""
    import lstm_infer
    options = options or {}
    ref = _Reference(src, spec)
    m = lstm_infer.load(lstm_path)
    names = m.output_names
    if len(names) != len(spec.outputs):
        raise ConversionError(f"{lstm_path} has {len(names)} outputs; the Keras model has "
                              f"{len(spec.outputs)}")
    rep = VerifyReport(source=os.path.basename(str(src)), streamed=m.streamable,
                       tolerance=float(options.get("tolerance", 1e-4)))
    for n in names:
        rep.run_max_abs[n] = rep.run_max_rel[n] = 0.0
        if m.streamable:
            rep.stream_max_abs[n] = rep.stream_max_rel[n] = 0.0
    rng = np.random.default_rng(int(options.get("seed", 0)))
    B = int(spec.fixed_B or options.get("batch_size") or 2)
    lengths = [spec.fixed_T] if spec.fixed_T else list(options.get("lengths") or (1, 5, 33))
    # Full causal attention refuses sequences past its max_len: compare up to it.
    cap = min((n.attrs["window"] for n in m.graph.nodes
               if n.op == "CausalAttention" and n.attrs.get("limit")), default=None)
    if cap is not None and not spec.fixed_T and max(lengths) > cap:
        lengths = sorted({min(int(T), cap) for T in lengths})
        rep.notes.append(f"compared sequences of at most {cap} steps (attention_max_len)")
    cases = [_inputs(spec, rng, B, int(T)) for T in lengths]
    if inputs is not None:
        X = np.asarray(inputs, dtype=np.float32)
        cases.insert(0, X[None] if X.ndim == len(spec.input_shape) + 1 else X)
    if spec.fixed_T:
        rep.notes.append(f"the model's input has a fixed length {spec.fixed_T}: compared at "
                         "that length only (prefixes where Keras accepts them)")

    def upd(tab_abs, tab_rel, name, e):
        tab_abs[name] = max(tab_abs[name], e[0])
        tab_rel[name] = max(tab_rel[name], e[1])

    for X in cases:
        T = X.shape[1]
        want = ref(X)
        flat = X.reshape(X.shape[0], T, -1)
        ours = _as_list(m.run(flat), names)
        prefix = {T - 1: want}
        if any(not o.time and o.prefix_ok for o in spec.outputs):
            for t in _prefix_points(T):
                try:
                    prefix[t] = ref(X[:, :t + 1])
                except Exception:  # a model with a fixed input length rejects prefixes
                    pass
        for j, (o, name) in enumerate(zip(spec.outputs, names)):
            rows = [None] if o.time else (sorted(prefix) if o.prefix_ok else [T - 1])
            for t in rows:
                got, exp = (ours[j], want[j]) if t is None else (ours[j][:, t], prefix[t][j])
                upd(rep.run_max_abs, rep.run_max_rel, name, _err(got, exp))
        if not m.streamable:
            continue
        for b in range(min(X.shape[0], 2)):
            s, rows, pos, k = m.stream(), [], 0, b
            while pos < min(3, T):
                rows.append([y[None] for y in _as_list(s.step(flat[b, pos]), names)])
                pos += 1
            while pos < T:
                n = min(_CHUNKS[k % len(_CHUNKS)], T - pos)
                rows.append(_as_list(s.step_many(flat[b, pos:pos + n]), names))
                pos, k = pos + n, k + 1
            Y = [np.concatenate([r[j] for r in rows], axis=0) for j in range(len(names))]
            for j, (o, name) in enumerate(zip(spec.outputs, names)):
                pts = [None] if o.time else (sorted(prefix) if o.prefix_ok else [T - 1])
                for t in pts:
                    got, exp = (Y[j], want[j][b]) if t is None else (Y[j][t], prefix[t][j][b])
                    upd(rep.stream_max_abs, rep.stream_max_rel, name, _err(got, exp))
    return rep
