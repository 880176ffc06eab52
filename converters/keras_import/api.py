"""The Keras importer's entry points: `convert_keras` and `verify_keras_file`."""
from __future__ import annotations

import os

import numpy as np

from ..report import ConversionReport, VerifyReport
from .reader import read_keras_file
from .walk import KerasSpec, build_graph

__all__ = ["convert_keras", "verify_keras_file"]

_KNOWN_OPTIONS = {"tolerance", "seed", "lengths", "batch_size", "attention_max_len"}


def _analyse(src, options: dict):
    from lstm_infer.builder import GraphBuilder
    kf = read_keras_file(src)
    b, spec, warns = build_graph(kf, GraphBuilder, options)
    return kf, b, spec, warns


def _last_step_notes(spec: KerasSpec) -> list[str]:
    notes = []
    for o in spec.outputs:
        if o.time:
            continue
        msg = (f"output {o.index} ({o.label}) is the model's result for the whole sequence: "
               "lstm-infer emits it at every step, so run() returns (T, O) whose last row "
               "equals the Keras output")
        msg += (" and row t is the result for the sequence ending at step t" if o.prefix_ok else
                "; it goes through a reverse-direction layer or attention without a causal mask, "
                "so earlier rows are NOT results for shorter sequences")
        notes.append(msg)
    return notes


def convert_keras(src: str | os.PathLike, path: str | os.PathLike, dtype: str = "fp32",
                  verify: bool = True, **options) -> ConversionReport:
    """Convert a Keras model file (`.keras` zip of Keras 3, or `.h5` of Keras 2 / Keras 3's
    legacy save) into a `.lstm` file, reading it with h5py and JSON only (no TensorFlow,
    no Keras). Sequential and functional models with one input; the layers and options
    are listed in `converters.keras_import.SUPPORTED`; anything else raises
    `converters.ConversionError` (UnsupportedOpError for an unknown layer class) naming
    the layer and its class.

    `dtype` must be "fp32" here (converters.convert_keras compresses to fp16/int8). With
    `verify=True` (default) the written file is compared with Keras's own outputs (see
    `verify.py`; needs keras installed, else a ConversionError says so). Options:
    `tolerance` (default 1e-4), `seed`, `lengths`, `batch_size` for verification.
    """
    import lstm_infer
    if dtype != "fp32":
        raise ValueError(f"this importer writes fp32; use converters.convert_keras for {dtype!r}")
    unknown = sorted(set(options) - _KNOWN_OPTIONS)
    if verify:
        from .verify import import_keras
        import_keras()  # fail before converting when verification cannot run
    kf, b, spec, warns = _analyse(src, options)
    if unknown:
        warns.insert(0, f"ignored unknown option(s) for Keras import: {', '.join(unknown)}")
    b.save(path, source=os.fspath(src), converter="lstm-infer keras importer",
           keras_version=kf.keras_version, keras_model=kf.config.get("class_name"),
           keras_outputs=[{"index": o.index, "label": o.label,
                           "kind": "seq" if o.time else "last"} for o in spec.outputs])
    report = ConversionReport(os.fspath(path), str(lstm_infer.load(path, warmup=False)),
                              warnings=warns + _last_step_notes(spec))
    if verify:
        from .verify import verify_against_keras
        report.verify = verify_against_keras(os.fspath(path), os.fspath(src), spec, options)
        if not report.verify.ok:
            report.warnings.append(f"verification error {report.verify.max_abs_error:.3g} is "
                                   f"above the tolerance {report.verify.tolerance:g}")
    return report


def verify_keras_file(lstm_path: str | os.PathLike, src: str | os.PathLike,
                      inputs: np.ndarray | None = None, **options) -> VerifyReport:
    """Compare a `.lstm` file with its Keras source file on random (and given) inputs."""
    from .verify import verify_against_keras
    _, _, spec, _ = _analyse(src, options)
    return verify_against_keras(os.fspath(lstm_path), os.fspath(src), spec, options, inputs)
