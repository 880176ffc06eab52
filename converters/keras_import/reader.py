"""Reading Keras files without Keras or TensorFlow: the model config (JSON) and each
layer's weights, in the order `layer.get_weights()` lists them, with h5py.

* `.keras` (Keras 3): a zip of `config.json` and `model.weights.h5`. The weights file
  keys layers by attribute path (`layers/<snake_case class name>[_<k>]`), not by layer
  name; each layer's `vars` group records the layer name as an attribute, which is how
  they are matched here (with the snake-case rule as a fallback for files without it).
  Inside a layer group, variables are `vars/0, vars/1, ...`; sub-layers are child groups
  (`cell` of an RNN, `forward_layer`/`backward_layer` of Bidirectional, `layer` of
  TimeDistributed), visited in get_weights() order.
* `.h5` (Keras 2, and Keras 3's legacy save): the root attribute `model_config` (JSON)
  and `model_weights/<layer name>` groups whose `weight_names` attribute lists the
  datasets in get_weights() order (Keras 2 names end in `:0`).
"""
from __future__ import annotations

import io
import json
import os
import re
import zipfile
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConversionError

__all__ = ["KerasFile", "read_keras_file"]

# Sub-layer groups of a .keras weights file, in the order get_weights() visits them.
# MultiHeadAttention's sub-layers are listed in the order it builds them (query, key,
# gate, value, output), as its get_weights() and the .h5 file list them.
_CHILD_ORDER = ("layer", "forward_layer", "backward_layer", "cell", "query_dense", "key_dense",
                "_gate_dense", "value_dense", "output_dense")


@dataclass
class KerasFile:
    """A Keras model file: its config and weights by layer name."""
    path: str
    config: dict                 # {"class_name": "Sequential"|"Functional"|..., "config": {...}}
    keras_version: str
    weights: dict = field(default_factory=dict)   # layer name -> [np.ndarray]

    @property
    def keras_major(self) -> int:
        m = re.match(r"(\d+)", self.keras_version or "")
        return int(m.group(1)) if m else 3

    def layer_weights(self, name: str) -> list[np.ndarray]:
        return self.weights.get(name, [])


def _h5py():
    try:
        import h5py
    except ImportError as e:
        raise ImportError("reading Keras files needs h5py: pip install 'lstm-infer[keras]'",
                          name="h5py") from e
    return h5py


def _snake(name: str) -> str:
    """Keras's naming.to_snake_case (the attribute path rule of .keras weight files)."""
    s = re.sub(r"\W+", "", name)
    s = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", s)
    s = re.sub("([a-z])([A-Z])", r"\1_\2", s).lower()
    return s


def _collect(group) -> list[np.ndarray]:
    """A .keras layer group's variables in get_weights() order."""
    out: list[np.ndarray] = []
    if "vars" in group:
        v = group["vars"]
        out += [np.asarray(v[k][()]) for k in sorted(v.keys(), key=int)]
    children = [k for k in group.keys() if k != "vars"]
    for k in sorted(children, key=lambda c: (_CHILD_ORDER.index(c) if c in _CHILD_ORDER
                                             else len(_CHILD_ORDER), c)):
        out += _collect(group[k])
    return out


def _layer_configs(config: dict) -> list[dict]:
    inner = config.get("config", {})
    layers = inner.get("layers", []) if isinstance(inner, dict) else inner
    return [l for l in layers if isinstance(l, dict)]


def _layer_name(layer: dict) -> str:
    return layer.get("name") or layer.get("config", {}).get("name", "")


def _read_keras_zip(path: str) -> KerasFile:
    h5py = _h5py()
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "config.json" not in names:
                raise ConversionError(f"{path}: no config.json inside; not a Keras 3 .keras file")
            config = json.loads(z.read("config.json"))
            meta = json.loads(z.read("metadata.json")) if "metadata.json" in names else {}
            wbytes = z.read("model.weights.h5") if "model.weights.h5" in names else None
    except zipfile.BadZipFile as e:
        raise ConversionError(f"{path}: not a zip file, so not a Keras 3 .keras file ({e})") from e
    kf = KerasFile(path, config, str(meta.get("keras_version", "3")))
    if wbytes is None:
        return kf
    with h5py.File(io.BytesIO(wbytes), "r") as f:
        groups = f["layers"] if "layers" in f else {}
        by_name = {}
        for key in groups.keys():
            g = groups[key]
            name = g["vars"].attrs.get("name") if "vars" in g else None
            by_name[str(name) if name is not None else f"\0{key}"] = key
        # Fallback for files whose groups do not record the layer name: the attribute
        # path is the snake-case class name, numbered per class in model.layers order.
        used: dict[str, int] = {}
        for layer in _layer_configs(config):
            if config.get("class_name") == "Sequential" and layer.get("class_name") == "InputLayer":
                continue
            base = _snake(layer.get("class_name", ""))
            key = base if base not in used else f"{base}_{used[base] + 1}"
            used[base] = used.get(base, -1) + 1
            name = _layer_name(layer)
            gkey = by_name.get(name, key if key in groups else None)
            if gkey is not None:
                kf.weights[name] = _collect(groups[gkey])
    return kf


def _read_h5(path: str) -> KerasFile:
    h5py = _h5py()
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ConversionError(f"{path}: not an HDF5 file ({e})") from e
    with f:
        cfg = f.attrs.get("model_config")
        if cfg is None:
            raise ConversionError(
                f"{path}: no 'model_config' attribute: this is a weights-only file "
                "(model.save_weights); save the whole model with model.save(...)")
        config = json.loads(cfg.decode() if isinstance(cfg, bytes) else cfg)
        version = f.attrs.get("keras_version", b"2")
        version = version.decode() if isinstance(version, bytes) else str(version)
        kf = KerasFile(path, config, version)
        root = f["model_weights"] if "model_weights" in f else f
        for name in root.keys():
            g = root[name]
            wnames = g.attrs.get("weight_names", [])
            kf.weights[name] = [np.asarray(g[n.decode() if isinstance(n, bytes) else str(n)][()])
                                for n in wnames]
    return kf


def read_keras_file(src: str | os.PathLike) -> KerasFile:
    """Read a `.keras` zip or a `.h5` file (by content: a zip or HDF5 signature)."""
    path = os.fspath(src)
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"PK"):
        return _read_keras_zip(path)
    if head == b"\x89HDF\r\n\x1a\n":
        return _read_h5(path)
    raise ConversionError(f"{path}: neither a Keras 3 .keras zip nor an HDF5 .h5 file")
