"""Importers into the `.lstm` format. Each imports its framework (torch, onnx) lazily,
so `import converters` is cheap and works without either installed.

    convert_torch(module, "model.lstm", example_input=x)        # an nn.Module in memory
    convert_file("model.pt2", "model.lstm")                     # .pt2 / state_dict / .onnx by suffix
    verify_file("model.lstm", "model.pt2")                      # numerical comparison report
"""
from __future__ import annotations

from .report import ConversionReport, VerifyReport

__all__ = ["convert_torch", "convert_onnx", "convert_file", "verify_file",
           "ConversionReport", "VerifyReport", "ConversionError"]


class ConversionError(ValueError):
    """The source model uses something the converter does not support (message names it)."""


def convert_torch(module, path, example_input=None, dtype: str = "fp32", verify: bool = True,
                  **options) -> ConversionReport:
    from .torch_import import convert_torch as _impl
    return _impl(module, path, example_input=example_input, dtype=dtype, verify=verify, **options)


def convert_onnx(src, path, dtype: str = "fp32", verify: bool = True, **options) -> ConversionReport:
    from .onnx_import import convert_onnx as _impl
    return _impl(src, path, dtype=dtype, verify=verify, **options)


def convert_file(src, path, dtype: str = "fp32", verify: bool = True, **options) -> ConversionReport:
    """Dispatch on the source file's suffix: .onnx, .pt2 (torch.export), else a state_dict file."""
    s = str(src).lower()
    if s.endswith(".onnx"):
        return convert_onnx(src, path, dtype=dtype, verify=verify, **options)
    from .torch_import import convert_torch_file
    return convert_torch_file(src, path, dtype=dtype, verify=verify, **options)


def verify_file(lstm_path, src, inputs=None, **options) -> VerifyReport:
    """Compare a `.lstm` file with its source model (ONNX or PyTorch file)."""
    s = str(src).lower()
    if s.endswith(".onnx"):
        from .onnx_import import verify_onnx as _impl
    else:
        from .torch_import import verify_torch_file as _impl
    return _impl(lstm_path, src, inputs=inputs, **options)
