"""A Keras model config as a list of layer calls in dependency order.

Sequential: each layer is called once on the previous layer's output. Functional: each
layer's `inbound_nodes` lists its calls, each naming its input tensors as
(layer name, node index, tensor index): Keras 3 writes a call as
`{"args": [...], "kwargs": {...}}` with `__keras_tensor__` entries carrying a
`keras_history`; Keras 2 as a list of `[name, node_index, tensor_index, kwargs]`.
A tensor is keyed by that triple throughout the importer.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConversionError

__all__ = ["Call", "ModelInput", "Topology", "parse_model"]

TensorKey = tuple  # (layer name, node index, tensor index)


@dataclass
class ModelInput:
    name: str
    key: TensorKey
    batch_shape: tuple           # (batch, time, *per step), None where free
    dtype: str = "float32"


@dataclass
class Call:
    """One call of a layer: its config, its input tensors and its node index."""
    layer: dict                  # {"class_name", "config", ...}
    node: int
    inputs: list                 # [TensorKey]
    kwargs: dict = field(default_factory=dict)     # tensor-valued keyword arguments (config)
    options: dict = field(default_factory=dict)    # the other keyword arguments (use_causal_mask)
    kw_inputs: dict = field(default_factory=dict)  # keyword -> [TensorKey] of kwargs

    @property
    def name(self) -> str:
        return self.layer.get("name") or self.layer.get("config", {}).get("name", "?")

    @property
    def class_name(self) -> str:
        return self.layer.get("class_name", "?")

    def output(self, k: int = 0) -> TensorKey:
        return (self.name, self.node, k)


@dataclass
class Topology:
    inputs: list                 # [ModelInput]
    calls: list                  # [Call], dependency order
    outputs: list                # [TensorKey]


def _batch_shape(cfg: dict) -> tuple | None:
    for key in ("batch_shape", "batch_input_shape"):
        if cfg.get(key) is not None:
            return tuple(cfg[key])
    if cfg.get("shape") is not None:  # keras.Input(shape=...) in some versions
        return (None, *cfg["shape"])
    return None


def _history(t) -> list[TensorKey]:
    """Keras 3 call arguments -> the tensor keys inside them (nested lists flattened)."""
    if isinstance(t, dict):
        if t.get("class_name") == "__keras_tensor__":
            h = t["config"]["keras_history"]
            return [(h[0], int(h[1]), int(h[2]))]
        return [k for v in t.values() for k in _history(v)]
    if isinstance(t, (list, tuple)):
        return [k for v in t for k in _history(v)]
    return []


def _calls_of(layer: dict) -> list[tuple[list, dict, dict]]:
    """[(input keys, tensor kwargs, other kwargs)] for each inbound node of a functional
    layer. Keras 2 mixes both kinds in one dict (returned as both)."""
    out = []
    for node in layer.get("inbound_nodes", []):
        if isinstance(node, dict):  # Keras 3
            kwargs = node.get("kwargs", {}) or {}
            tensor_kwargs = {k: v for k, v in kwargs.items() if _history(v)}
            options = {k: v for k, v in kwargs.items() if k not in tensor_kwargs}
            out.append((_history(node.get("args", [])), tensor_kwargs, options))
        else:                       # Keras 2: [[name, node, tensor, kwargs], ...]
            keys, kwargs = [], {}
            for entry in node:
                keys.append((entry[0], int(entry[1]), int(entry[2])))
                if len(entry) > 3 and isinstance(entry[3], dict):
                    kwargs.update({k: v for k, v in entry[3].items() if v is not None
                                   and k not in ("training", "mask")})
            out.append((keys, kwargs, kwargs))
    return out


def _keras2_tensor(v) -> list[TensorKey]:
    """A Keras 2 tensor keyword argument ([layer name, node, tensor], e.g. MultiHeadAttention's
    value) as a tensor key; [] for anything else."""
    if (isinstance(v, (list, tuple)) and len(v) >= 3 and isinstance(v[0], str)
            and isinstance(v[1], int) and isinstance(v[2], int)):
        return [(v[0], int(v[1]), int(v[2]))]
    return []


def _kw_inputs(kwargs: dict) -> dict:
    """keyword -> [TensorKey] for the tensor-valued keyword arguments of a call."""
    out = {n: _history(v) or _keras2_tensor(v) for n, v in kwargs.items()}
    return {n: keys for n, keys in out.items() if keys}


def _io_keys(spec) -> list[TensorKey]:
    if not spec:
        return []
    if isinstance(spec[0], str):        # a single [name, node, tensor]
        spec = [spec]
    return [(s[0], int(s[1]), int(s[2])) for s in spec]


def _parse_sequential(cfg) -> Topology:
    layers = cfg.get("layers", []) if isinstance(cfg, dict) else cfg
    layers = [l for l in layers if isinstance(l, dict)]
    shape = None
    if layers and layers[0].get("class_name") == "InputLayer":
        shape = _batch_shape(layers[0].get("config", {}))
        layers = layers[1:]
    if shape is None and layers:
        shape = _batch_shape(layers[0].get("config", {}))
    if shape is None and isinstance(cfg, dict) and cfg.get("build_input_shape"):
        shape = tuple(cfg["build_input_shape"])
    if shape is None:
        raise ConversionError("the Sequential model has no input shape in its config (it was "
                              "saved before being built); build it with an Input first")
    inp = ModelInput("input", ("__input__", 0, 0), shape)
    calls, prev = [], inp.key
    for layer in layers:
        c = Call(layer, 0, [prev])
        calls.append(c)
        prev = c.output()
    return Topology([inp], calls, [prev])


def _parse_functional(cfg: dict) -> Topology:
    layers = cfg.get("layers", [])
    inputs, pending = [], []
    for layer in layers:
        if layer.get("class_name") == "InputLayer":
            name = layer.get("name") or layer["config"]["name"]
            inputs.append(ModelInput(name, (name, 0, 0), _batch_shape(layer["config"]) or (),
                                     str(layer["config"].get("dtype", "float32"))))
            continue
        for k, (keys, kwargs, options) in enumerate(_calls_of(layer)):
            pending.append(Call(layer, k, keys, kwargs, options, _kw_inputs(kwargs)))
    order = [i.key for i in inputs]
    in_keys = _io_keys(cfg.get("input_layers"))
    if in_keys:
        by_key = {i.key: i for i in inputs}
        inputs = [by_key[k] for k in in_keys if k in by_key]
    # Dependency order (configs are usually in it already; shared layers may not be).
    ready = {(k[0], k[1]) for k in order}    # (layer, node) calls done
    calls = []
    while pending:
        progress = [c for c in pending if all((k[0], k[1]) in ready for k in c.inputs + [
            t for keys in c.kw_inputs.values() for t in keys])]
        if not progress:
            missing = sorted({k[0] for c in pending for k in c.inputs})
            raise ConversionError(f"the model config's layer graph cannot be ordered (inputs "
                                  f"from {', '.join(missing)} are never produced)")
        for c in progress:
            calls.append(c)
            pending.remove(c)
            ready.add((c.name, c.node))
    return Topology(inputs, calls, _io_keys(cfg.get("output_layers")))


def parse_model(config: dict) -> Topology:
    """A model config ({"class_name", "config"}) -> its Topology."""
    cls = config.get("class_name")
    cfg = config.get("config", {})
    if cls == "Sequential":
        return _parse_sequential(cfg)
    if cls in ("Functional", "Model") or (isinstance(cfg, dict) and "output_layers" in cfg):
        return _parse_functional(cfg)
    raise ConversionError(f"a Keras model of class {cls!r}: only Sequential and functional "
                          "(keras.Model(inputs, outputs)) models are supported; a subclassed "
                          "model has no layer graph in its file")
