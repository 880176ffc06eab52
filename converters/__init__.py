"""Importers into the `.lstm` format. Each imports its framework (torch, onnx) lazily,
so `import converters` is cheap and works without either installed.

    convert_torch(module, "model.lstm", example_input=x)        # an nn.Module in memory
    convert_keras("model.keras", "model.lstm")                  # .keras / .h5, no TensorFlow
    convert_file("model.pt2", "model.lstm")                     # .pt2 / state_dict / .onnx / .keras / .h5 by suffix
    verify_file("model.lstm", "model.pt2")                      # numerical comparison report

Each `convert_*` verifies the written model against its source (onnxruntime, torch) and
raises `VerificationError` (a `ConversionError`, with the `report`) when they disagree;
the output file is then not written. `verify=False` skips the check.

Inside: `torch_import/` (PyTorch: export, walk, `ops/` registry), `keras_import/` (Keras
files read with h5py: reader, topology, walk, `layers/` registry, verify), `onnx_import` with
`onnx_inputs`, `onnx_dims`, `onnx_walk`, `onnx_graph`, `onnx_sym`, `onnx_fold`, `onnx_optimize` and
`onnx_ops/` (ONNX), `torch_verify` / `onnx_verify` (numerical checks against the source),
`torch_state_dict` (architecture from a state_dict), `layout` (weight layouts shared by
every importer), `errors` (the ConversionError hierarchy), `report` (what they return).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .errors import ConversionError, UnsupportedOpError, VerificationError
from .report import ConversionReport, VerifyReport

__all__ = ["convert_torch", "convert_onnx", "convert_keras", "convert_file", "verify_file",
           "ConversionReport", "VerifyReport", "ConversionError", "UnsupportedOpError",
           "VerificationError"]

if TYPE_CHECKING:  # annotations only: `import converters` stays free of numpy/torch/onnx
    import numpy as np


def _with_dtype(convert, path, dtype: str, verify: bool) -> ConversionReport:
    """Convert at fp32 (verified against the source), then compress to `dtype` and report
    how far the compressed model is from the fp32 one on random unit-scale inputs.

    The file is written next to `path` under a temporary name and moved to `path` only
    when everything succeeded: a conversion that fails, or whose verification disagrees
    with the source (VerificationError), leaves `path` as it was."""
    from lstm_infer.quantize import DTYPES, quantize_file
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    path = os.fspath(path)
    tmp = f"{path}.fp32-{os.getpid()}.tmp"
    tmp_q = f"{path}.{dtype}-{os.getpid()}.tmp"
    try:
        report = convert(tmp)
        if verify:
            _require_verified(report, path)
        if dtype == "fp32":
            os.replace(tmp, path)
        else:
            quantize_file(tmp, tmp_q, dtype)
            if verify:
                report.warnings.append(_compression_error(tmp, tmp_q, dtype))
            os.replace(tmp_q, path)
    finally:
        for t in (tmp, tmp_q):
            if os.path.exists(t):
                os.remove(t)
    import lstm_infer
    report.output_path = path
    report.summary = str(lstm_infer.load(path, warmup=False))   # named as the file now is
    return report


def _require_verified(report: ConversionReport, path: str) -> None:
    v = report.verify
    if v is None or v.ok:
        return
    errs = {**{f"{k} (run)": e for k, e in v.run_max_abs.items()},
            **{f"{k} (streamed)": e for k, e in v.stream_max_abs.items()}}
    worst = max(errs, key=errs.get)
    raise VerificationError(
        f"verification against {v.source} failed: max abs error {v.max_abs_error:.3g} (output "
        f"{worst}) is above the tolerance {v.tolerance:g}; {path} was not written (convert with "
        "verify=False / --no-verify to write it anyway and inspect it)", report)


def _compression_error(fp32_path, path, dtype: str) -> str:
    import numpy as np

    import lstm_infer
    a, b = lstm_infer.load(fp32_path), lstm_infer.load(path)
    from lstm_infer.ops.embedding import example_inputs, token_vocab  # valid ids for a token model
    X = example_inputs(a.graph, (4, 200, a.input_size), np.random.default_rng(0))
    ya, yb = a.run(X), b.run(X)
    if isinstance(ya, dict):
        err = max(float(np.abs(ya[k] - yb[k]).max()) for k in ya)
    else:
        err = float(np.abs(ya - yb).max())
    what = "token ids" if token_vocab(a.graph) else "unit-scale inputs"
    return (f"{dtype} weights: max abs difference from the fp32 conversion {err:.3g} on random "
            f"{what} (4 x 200 steps); the verification above is of the fp32 model")


def convert_torch(module: Any, path: str | os.PathLike, example_input: Any = None,
                  dtype: str = "fp32", verify: bool = True, **options) -> ConversionReport:
    """An nn.Module or ExportedProgram to `path` (converted at fp32, then compressed to
    `dtype`); see converters.torch_import.convert_torch for the options."""
    from .torch_import import convert_torch as _impl
    return _with_dtype(lambda p: _impl(module, p, example_input=example_input, dtype="fp32",
                                       verify=verify, **options), path, dtype, verify)


def convert_onnx(src: Any, path: str | os.PathLike, dtype: str = "fp32", verify: bool = True,
                 **options) -> ConversionReport:
    """An ONNX file, bytes or ModelProto to `path`; see converters.onnx_import.convert_onnx."""
    from .onnx_import import convert_onnx as _impl
    return _with_dtype(lambda p: _impl(src, p, dtype="fp32", verify=verify, **options),
                       path, dtype, verify)


def convert_keras(src: str | os.PathLike, path: str | os.PathLike, dtype: str = "fp32",
                  verify: bool = True, **options) -> ConversionReport:
    """A Keras `.keras` / `.h5` file to `path`, read without TensorFlow (h5py + JSON);
    verified with Keras itself when installed. See converters.keras_import.convert_keras."""
    from .keras_import import convert_keras as _impl
    return _with_dtype(lambda p: _impl(src, p, dtype="fp32", verify=verify, **options),
                       path, dtype, verify)


_KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def convert_file(src: str | os.PathLike, path: str | os.PathLike, dtype: str = "fp32",
                 verify: bool = True, **options) -> ConversionReport:
    """Dispatch on the source file's suffix: .onnx, .keras/.h5 (Keras), .pt2
    (torch.export), else a state_dict file."""
    s = str(src).lower()
    if s.endswith(".onnx"):
        return convert_onnx(src, path, dtype=dtype, verify=verify, **options)
    if s.endswith(_KERAS_SUFFIXES):
        return convert_keras(src, path, dtype=dtype, verify=verify, **options)
    from .torch_import import convert_torch_file
    return _with_dtype(lambda p: convert_torch_file(src, p, dtype="fp32", verify=verify, **options),
                       path, dtype, verify)


def verify_file(lstm_path: str | os.PathLike, src: str | os.PathLike,
                inputs: np.ndarray | None = None, **options) -> VerifyReport:
    """Compare a `.lstm` file with its source model (ONNX, Keras or PyTorch file)."""
    s = str(src).lower()
    if s.endswith(".onnx"):
        from .onnx_import import verify_onnx as _impl
    elif s.endswith(_KERAS_SUFFIXES):
        from .keras_import import verify_keras_file as _impl
    else:
        from .torch_import import verify_torch_file as _impl
    return _impl(lstm_path, src, inputs=inputs, **options)
