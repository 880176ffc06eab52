"""The op graph: typed nodes, and validation of an untrusted graph against its tensors.

Each op's spec (lstm_infer/ops/<op>.py) says, from its attributes, which weights it takes
(with shapes), which input sizes it expects, which output size it produces and which
state it owns. Validation checks a graph from a file against these specs, so kernels only
ever see consistent sizes. The op table with semantics is in docs/FORMAT.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ModelFormatError, SpecError
from .ops import OPS
from .ops.base import integer
from .prelude.graph import Prelude, parse_prelude

@dataclass
class Node:
    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # role -> float32 array

    @property
    def is_recurrent(self) -> bool:
        """The op owns state carried from step to step (LSTM, GRU, RNN, ...)."""
        return OPS[self.op].recurrent

    @property
    def quantized(self) -> bool:
        """True if any weight matrix is int8 (run() then uses the int8 step kernels)."""
        return any(w.dtype == np.int8 for w in self.weights.values())


@dataclass
class Graph:
    inputs: list[tuple[str, int]]
    outputs: list[tuple[str, int]]
    nodes: list[Node]
    sizes: dict[str, int]  # value name -> feature size
    output_labels: list[str] = field(default_factory=list)  # user-facing names, in order
    prelude: Prelude | None = None  # whole-image ops before the per-step nodes (run() only)
    # value name -> per-step shape of a multi-dimensional graph input/output (a frame)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def streamable(self) -> bool:
        return self.prelude is None and not self.reverse_nodes

    @property
    def reverse_nodes(self) -> list[str]:
        """Nodes that need future inputs: reverse recurrent layers and sequence-only ops."""
        return [n.name for n in self.nodes
                if (n.is_recurrent and n.attrs.get("reverse")) or OPS[n.op].sequence_only]

    def param_count(self) -> int:
        pre = self.prelude.param_count() if self.prelude is not None else 0
        return pre + sum(node_params(n) for n in self.nodes)


def node_params(node: Node) -> int:
    """Learned parameters of a node: weights, not initial states or int8 scales."""
    init_roles = {init for _, init in OPS[node.op].spec(node.attrs).state.values()}
    return sum(int(w.size) for role, w in node.weights.items()
               if role not in init_roles and not role.endswith(".scale"))


def _name(v: Any, what: str) -> str:
    if not isinstance(v, str) or not 0 < len(v) <= 256:
        raise SpecError(f"{what} must be a non-empty string, got {v!r}")
    return v


def _frame_shape(spec: dict, name: str, n: int, shapes: dict) -> None:
    """An optional per-step `shape` of a graph input/output (a frame, e.g. [64, 64, 1]):
    flattened row-major it is the value, so its product must be the size."""
    shape = spec.get("shape")
    if shape is None:
        return
    if not isinstance(shape, list) or not 1 <= len(shape) <= 8:
        raise SpecError(f"shape of {name!r} must be a list of 1-8 integers, got {shape!r}")
    dims = tuple(integer({"dim": d}, "dim") for d in shape)
    if int(np.prod(dims)) != n:
        raise SpecError(f"shape {list(dims)} of {name!r} holds {int(np.prod(dims))} values, "
                        f"but its size is {n}")
    shapes[name] = dims


def parse_graph(doc: Any, tensors: dict[str, np.ndarray]) -> Graph:
    """Check a graph document against its tensors; return a Graph with float32 weights."""
    try:
        return _parse(doc, tensors)
    except SpecError as e:
        raise ModelFormatError(f"invalid model graph: {e}") from None


def _parse(doc: Any, tensors: dict[str, np.ndarray]) -> Graph:
    if not isinstance(doc, dict):
        raise SpecError("graph is not an object")
    for key in ("inputs", "outputs", "nodes"):
        if not isinstance(doc.get(key), list):
            raise SpecError(f"graph has no list {key!r}")
    if not 1 <= len(doc["inputs"]) <= 64:
        raise SpecError(f"a graph needs 1-64 inputs, got {len(doc['inputs'])}")
    if not doc["outputs"] or len(doc["nodes"]) > 10000:
        raise SpecError("graph needs 1+ outputs and at most 10000 nodes")
    sizes: dict[str, int] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    inputs = []
    for spec in doc["inputs"]:
        if not isinstance(spec, dict):
            raise SpecError("graph input entry is not an object")
        name = _name(spec.get("name"), "input name")
        if name in sizes:
            raise SpecError(f"graph input {name!r} is listed twice")
        sizes[name] = integer(spec, "size")
        inputs.append((name, sizes[name]))
        _frame_shape(spec, name, sizes[name], shapes)
    nodes: list[Node] = []
    seen_nodes: set[str] = set()
    for nd in doc["nodes"]:
        if not isinstance(nd, dict):
            raise SpecError("node entry is not an object")
        name = _name(nd.get("name"), "node name")
        where = f"node {name!r}"
        if name in seen_nodes:
            raise SpecError(f"duplicate {where}")
        seen_nodes.add(name)
        op = nd.get("op")
        if op not in OPS:
            raise SpecError(f"{where}: unknown op {op!r} (this build knows {', '.join(sorted(OPS))}); "
                            "the file may come from a newer lstm-infer")
        opdef = OPS[op]
        attrs = nd.get("attrs", {})
        ins, outs, wmap = nd.get("inputs"), nd.get("outputs"), nd.get("weights", {})
        if not isinstance(attrs, dict) or not isinstance(wmap, dict):
            raise SpecError(f"{where}: attrs/weights must be objects")
        if not isinstance(ins, list) or not isinstance(outs, list) or len(outs) != 1:
            raise SpecError(f"{where}: needs an input list and exactly one output")
        try:
            sig = opdef.spec(attrs)
        except SpecError as e:
            raise SpecError(f"{where} ({op}): {e}") from None
        in_sizes, out_size, wspec = sig.inputs, sig.output, dict(sig.weights)
        if len(ins) != len(in_sizes):
            raise SpecError(f"{where} ({op}): expects {len(in_sizes)} inputs, got {len(ins)}")
        for v, want in zip(ins, in_sizes):
            v = _name(v, f"{where} input")
            if v not in sizes:
                raise SpecError(f"{where}: input {v!r} is not produced before this node")
            if sizes[v] != want:
                raise SpecError(f"{where} ({op}): input {v!r} has size {sizes[v]}, expected {want}")
        out = _name(outs[0], f"{where} output")
        if out in sizes:
            raise SpecError(f"{where}: value {out!r} is produced twice")
        sizes[out] = out_size
        for role in opdef.matrix_roles:
            if role in wspec:
                wspec[f"{role}.scale"] = ((wspec[role][0][1],), False)
        weights: dict[str, np.ndarray] = {}
        for role, tname in wmap.items():
            if role not in wspec:
                raise SpecError(f"{where} ({op}): unexpected weight {role!r}")
            if not isinstance(tname, str) or tname not in tensors:
                raise SpecError(f"{where} ({op}): weight {role!r} refers to missing tensor {tname!r}")
            arr = tensors[tname]
            if tuple(arr.shape) != wspec[role][0]:
                raise SpecError(f"{where} ({op}): weight {role!r} has shape {tuple(arr.shape)}, "
                            f"expected {wspec[role][0]}")
            if arr.dtype == np.int8:
                if role not in opdef.matrix_roles:
                    raise SpecError(f"{where} ({op}): weight {role!r} is int8; only weight matrices may be")
                weights[role] = arr
            elif arr.dtype.kind == "f":
                # fp16 is a storage format: widened once here, computed in float32
                weights[role] = arr if arr.dtype == np.float32 else arr.astype(np.float32)
            else:
                raise SpecError(f"{where} ({op}): weight {role!r} has dtype {arr.dtype}, expected float or int8")
        for role in opdef.matrix_roles:
            quantized = role in weights and weights[role].dtype == np.int8
            scale = weights.get(f"{role}.scale")
            if quantized != (scale is not None):
                raise SpecError(f"{where} ({op}): int8 weight {role!r} needs per-column scales "
                            f"'{role}.scale' (and only int8 weights have them)")
            if scale is not None and not (np.isfinite(scale).all() and (scale >= 0).all()):
                raise SpecError(f"{where} ({op}): scales of {role!r} must be finite and >= 0")
        missing = [r for r, (_, req) in wspec.items() if req and r not in weights]
        if missing:
            raise SpecError(f"{where} ({op}): missing weights {missing}")
        if opdef.check is not None:
            try:
                opdef.check(attrs, weights, in_sizes)
            except SpecError as e:
                raise SpecError(f"{where} ({op}): {e}") from None
        nodes.append(Node(name, op, list(ins), [out], dict(attrs), weights))
    outputs, labels = [], []
    for spec in doc["outputs"]:
        if not isinstance(spec, dict):
            raise SpecError("graph output entry is not an object")
        name = _name(spec.get("name"), "output name")
        if name not in sizes:
            raise SpecError(f"graph output {name!r} is not produced by any node")
        if spec.get("size", sizes[name]) != sizes[name]:
            raise SpecError(f"graph output {name!r} declares size {spec.get('size')}, graph gives {sizes[name]}")
        outputs.append((name, sizes[name]))
        _frame_shape(spec, name, sizes[name], shapes)
        labels.append(_name(spec.get("label", name), "output label"))
    if len(set(labels)) != len(labels):
        raise SpecError(f"graph output labels are not unique: {labels}")
    prelude = None if doc.get("prelude") is None else parse_prelude(doc["prelude"], tensors, inputs)
    return Graph(inputs, outputs, nodes, sizes, labels, prelude, shapes)
