"""GraphBuilder: what every converter uses to emit a graph and write a `.lstm` file.

It names tensors `<node>.<role>`, checks the graph by loading it through the same
validator the runtime uses, and writes provenance. Converters only translate.
"""
from __future__ import annotations

import datetime
import hashlib
import os
from typing import Any

import numpy as np

from .fileformat import write_model
from .graph import parse_graph

__all__ = ["GraphBuilder", "file_sha256"]


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class GraphBuilder:
    def __init__(self, input_name: str, input_size: int, shape: tuple | None = None):
        """`shape`: the per-step shape of a multi-dimensional input (a frame), if any."""
        self.inputs = [{"name": input_name, "size": int(input_size),
                        **({"shape": [int(d) for d in shape]} if shape else {})}]
        self.sizes = {input_name: int(input_size)}
        self.nodes: list[dict] = []
        self.outputs: list[dict] = []
        self.tensors: dict[str, np.ndarray] = {}
        self._names: set[str] = set()
        self.prelude: dict | None = None

    def set_prelude(self, doc: dict, tensors: dict[str, np.ndarray]) -> None:
        """Whole-image ops run before the per-step graph (docs/FORMAT.md, "The prelude"):
        `doc` names its weights by tensor name; the file then needs format version 2."""
        for name in tensors:
            if name in self.tensors:
                raise ValueError(f"prelude tensor {name!r} exists already")
        self.prelude = doc
        self.tensors.update({k: np.ascontiguousarray(np.asarray(v, dtype=np.float32))
                             for k, v in tensors.items()})
        parse_graph(self.document(), self.tensors)

    def add_input(self, name: str, size: int) -> str:
        """Another per-step data input; the model takes the inputs concatenated in the order
        they were added (or a dict name -> array)."""
        if name in self.sizes:
            raise ValueError(f"value {name!r} exists already")
        self.inputs.append({"name": name, "size": int(size)})
        self.sizes[name] = int(size)
        return name

    def unique(self, base: str) -> str:
        name, k = base, 1
        while name in self._names:
            name, k = f"{base}_{k}", k + 1
        self._names.add(name)
        return name

    def add(self, op: str, name: str, inputs: list[str], attrs: dict[str, Any],
            weights: dict[str, np.ndarray | None] | None = None, output_size: int | None = None) -> str:
        """Append a node; returns the name of its output value. None weights are omitted."""
        name = self.unique(name)
        wmap = {}
        for role, arr in (weights or {}).items():
            if arr is None:
                continue
            tname = f"{name}.{role}"
            self.tensors[tname] = np.ascontiguousarray(np.asarray(arr, dtype=np.float32))
            wmap[role] = tname
        out = f"{name}.out"
        self.nodes.append({"name": name, "op": op, "inputs": list(inputs), "outputs": [out],
                           "attrs": dict(attrs), "weights": wmap})
        # Validate incrementally so a converter bug points at the node that caused it;
        # a rejected node is rolled back so the builder stays usable.
        try:
            g = parse_graph(self.document(), self.tensors)
        except Exception:
            self.nodes.pop()
            for tname in wmap.values():
                self.tensors.pop(tname, None)
            self._names.discard(name)
            raise
        self.sizes[out] = g.sizes[out]
        return out

    def output(self, value: str, name: str | None = None, shape: tuple | None = None) -> None:
        """`shape`: the per-step shape of a multi-dimensional output (a frame), if any."""
        self.outputs.append({"name": value, "size": self.sizes[value],
                             **({"label": name} if name else {}),
                             **({"shape": [int(d) for d in shape]} if shape else {})})

    def document(self) -> dict:
        outs = self.outputs or ([{"name": self.nodes[-1]["outputs"][0]}] if self.nodes
                                else [{"name": self.inputs[0]["name"]}])
        doc = {"inputs": self.inputs, "outputs": outs, "nodes": self.nodes}
        if self.prelude is not None:
            doc["prelude"] = self.prelude
        return doc

    def save(self, path: str | os.PathLike, source: str | None = None, converter: str = "",
             **extra: Any) -> None:
        if not self.outputs:
            raise ValueError("graph has no outputs")
        from . import __version__
        prov = {"source": os.path.basename(source) if source else None,
                "source_sha256": file_sha256(source) if source and os.path.isfile(source) else None,
                "converter": converter, "converter_version": __version__,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                **extra}
        parse_graph(self.document(), self.tensors)
        write_model(path, self.document(), self.tensors, prov)
