"""The state of one Keras conversion that every layer converter shares (`ctx`): the IR
graph being built (lstm_infer.builder.GraphBuilder), the file's weights, warnings, and
the building blocks layer converters emit through (linear, scale, activation, binary)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NoReturn

import numpy as np

from ..errors import ConversionError
from .reader import KerasFile
from .values import KValue

__all__ = ["Layer", "Context"]


@dataclass
class Layer:
    """One layer as its converter sees it: config, weights in get_weights() order, the
    tensor-valued keyword arguments of this call (e.g. initial_state) as in the config and
    as values (`kw_values`: keyword -> [KValue, Refused or None]), and the other keyword
    arguments (`options`, e.g. use_causal_mask)."""
    name: str
    class_name: str
    config: dict
    weights: list
    kwargs: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    kw_values: dict = field(default_factory=dict)

    def get(self, key: str, default=None):
        return self.config.get(key, default)


class Context:
    """Conversion state for one Keras model (see the module docstring)."""

    def __init__(self, kf: KerasFile, builder, options: dict, fixed_T: int | None = None):
        self.file = kf
        self.b = builder
        self.options = options
        self.fixed_T = fixed_T               # time length fixed by the model input, if any
        self.warnings: list[str] = []
        self.layer: Layer | None = None

    @property
    def keras_major(self) -> int:
        return self.file.keras_major

    # ---- diagnostics ---------------------------------------------------------
    def where(self) -> str:
        L = self.layer
        return f"layer {L.name!r} ({L.class_name})" if L else "the model"

    def fail(self, msg: str) -> NoReturn:
        """Raise ConversionError naming the layer and its class."""
        raise ConversionError(f"{self.where()}: {msg}")

    def warn(self, msg: str) -> None:
        self.warnings.append(f"{self.where()}: {msg}")

    def weights(self, layer: Layer, n: int) -> list[np.ndarray]:
        """The layer's n weight arrays (float64 for exact folding), or a clear error."""
        if len(layer.weights) != n:
            self.fail(f"expected {n} weight arrays from the file, found {len(layer.weights)}")
        return [np.asarray(w, dtype=np.float64) for w in layer.weights]

    # ---- emitting IR nodes ---------------------------------------------------
    def node_name(self, suffix: str = "") -> str:
        base = self.layer.name if self.layer else "node"
        return base.replace("/", ".") + suffix

    def emit(self, op: str, inputs: list[str], attrs: dict, weights: dict | None = None,
             suffix: str = "") -> str:
        return self.b.add(op, self.node_name(suffix), inputs, attrs, weights)

    def size_of(self, vid: str) -> int:
        return self.b.sizes[vid]

    def linear(self, v: KValue, W: np.ndarray, bias: np.ndarray | None, out_shape: tuple,
               groups: int = 1, suffix: str = "") -> KValue:
        """y = x W + bias per step; W (in/groups, out) as the IR's Linear reads it."""
        attrs = {"in_features": v.size, "out_features": int(W.shape[1])}
        if groups > 1:
            attrs["groups"] = groups
        vid = self.emit("Linear", [v.vid], attrs, {"W": W, "bias": bias}, suffix)
        return v.derive(vid, out_shape)

    def scale(self, v: KValue, scale: np.ndarray | None, shift: np.ndarray | None,
              suffix: str = "") -> KValue:
        vid = self.emit("Scale", [v.vid], {"size": v.size}, {"scale": scale, "shift": shift},
                        suffix)
        return v.derive(vid)

    def act(self, v: KValue, kind: str, alpha: float | None = None, beta: float | None = None,
            axis_size: int | None = None, suffix: str = "") -> KValue:
        attrs: dict = {"kind": kind, "size": v.size}
        if alpha is not None:
            attrs["alpha"] = float(alpha)
        if beta is not None:
            attrs["beta"] = float(beta)
        if axis_size is not None and axis_size != v.size:
            attrs["axis_size"] = int(axis_size)
        return v.derive(self.emit("Activation", [v.vid], attrs, None, suffix))

    def binary(self, kind: str, a: KValue, b: KValue, suffix: str = "") -> KValue:
        if a.size != b.size:
            self.fail(f"element-wise {kind} of per-step shapes {a.shape} and {b.shape} "
                      "(broadcasting is not supported)")
        vid = self.emit("Binary", [a.vid, b.vid], {"kind": kind, "size": a.size}, None, suffix)
        return KValue(vid, a.shape, a.time, a.prefix_ok and b.prefix_ok)
