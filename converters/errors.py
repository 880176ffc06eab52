"""Every error a converter raises, in one hierarchy, so that `except converters.ConversionError`
catches them all (and, as before, `except ValueError`).

    ValueError
    └── ConversionError          the source model cannot be converted (message names why)
        ├── UnsupportedOpError   an op no converter handles (PyTorch aten op, ONNX op type)
        ├── VerificationError    the converted model disagrees with its source (`.report`)
        └── OnnxConversionError  one ONNX conversion attempt failed; the importer tries the
            │                    next time/batch axis assignment before giving up
            ├── AxisError        the assignment being tried does not fit the graph
            └── SymError         a symbolic size (sequence length, batch) cannot be resolved

This module imports nothing from the package, so every module can import it (it used to
live in `converters/__init__`, which made each importer import its own package back).
"""
from __future__ import annotations

__all__ = ["ConversionError", "UnsupportedOpError", "VerificationError", "OnnxConversionError",
           "AxisError", "SymError"]


class ConversionError(ValueError):
    """The source model uses something the converter does not support (message names it)."""


class UnsupportedOpError(ConversionError):
    """An op that no converter handles; the message lists what is supported. Not retried:
    a different axis assignment does not make an unknown op known."""


class VerificationError(ConversionError):
    """The converted model's outputs differ from the source framework's beyond the
    tolerance; `report` is the VerifyReport. `convert_*` raise it and write nothing at the
    output path."""

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report


class OnnxConversionError(ConversionError):
    """An ONNX graph that does not convert under the axis assignment being tried. Raised
    inside op converters; `convert_graph` collects them per attempt and reports the one
    that got furthest when every assignment fails."""


class AxisError(OnnxConversionError):
    """The chosen time/batch axes of the data input do not fit the graph (try another)."""


class SymError(OnnxConversionError):
    """A symbolic size computation that cannot be resolved."""
