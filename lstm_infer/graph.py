"""The op graph: typed nodes, and validation of an untrusted graph against its tensors.

Each op has a spec that says, from its attributes, which weights it takes (with
shapes), which input sizes it expects and which output size it produces. Validation
checks a graph from a file against these specs, so kernels only ever see consistent
sizes. The op table with semantics is in docs/FORMAT.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .errors import ModelFormatError

RECURRENT_OPS = ("LSTM", "GRU", "RNN")
# Weight matrices (stored (in, out)) that may be int8 with per-column scales `<role>.scale`.
MATRIX_ROLES = {"LSTM": ("W_ih", "W_hh", "W_hr"), "GRU": ("W_ih", "W_hh"), "RNN": ("W_ih", "W_hh"),
                "Linear": ("W",)}
ELEMENTWISE_ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid", "gelu", "gelu_tanh",
                           "leaky_relu", "elu", "softplus", "hard_sigmoid", "affine",
                           "thresholded_relu", "scaled_tanh", "softsign", "exp", "log", "sqrt",
                           "neg", "abs", "reciprocal", "erf", "clip", "pow")
VECTOR_ACTIVATIONS = ("softmax", "log_softmax")
ACTIVATIONS = ELEMENTWISE_ACTIVATIONS + VECTOR_ACTIVATIONS
DEFAULT_ALPHA = {"leaky_relu": 0.01, "elu": 1.0}
GATE_ACTIVATIONS = ("sigmoid", "tanh", "relu", "affine", "leaky_relu", "thresholded_relu",
                    "scaled_tanh", "hard_sigmoid", "elu", "softsign", "softplus")
BINARY_KINDS = ("add", "sub", "mul", "div", "max", "min", "pow")
REDUCE_KINDS = ("mean", "sum", "max", "min")
MAX_SIZE = 1 << 20  # largest feature size we accept from a file


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
        return self.op in RECURRENT_OPS

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

    @property
    def streamable(self) -> bool:
        return not self.reverse_nodes

    @property
    def reverse_nodes(self) -> list[str]:
        """Nodes that need future inputs: reverse recurrent layers and sequence-only ops."""
        return [n.name for n in self.nodes
                if (n.is_recurrent and n.attrs.get("reverse")) or n.op in SEQUENCE_ONLY_OPS]

    def param_count(self) -> int:
        return sum(int(w.size) for n in self.nodes for role, w in n.weights.items()
                   if role not in ("h0", "c0") and not role.endswith(".scale"))


class _Err(Exception):
    pass


def _int(attrs: dict, key: str, lo: int = 1, hi: int = MAX_SIZE, default: Any = None) -> int:
    v = attrs.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise _Err(f"attribute {key!r} must be an integer in [{lo}, {hi}], got {v!r}")
    return v


def _bool(attrs: dict, key: str, default: bool = False) -> bool:
    v = attrs.get(key, default)
    if not isinstance(v, bool):
        raise _Err(f"attribute {key!r} must be true/false, got {v!r}")
    return v


def _float(attrs: dict, key: str, default: float) -> float:
    v = attrs.get(key, default)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        raise _Err(f"attribute {key!r} must be a finite number, got {v!r}")
    return float(v)


# Each spec: attrs -> (input sizes, output size, {role: (shape, required)})
Spec = Callable[[dict], tuple[list[int], int, dict[str, tuple[tuple[int, ...], bool]]]]


def _recurrent_common(a: dict, n_acts: int) -> None:
    _bool(a, "reverse")
    acts = a.get("activations")
    if acts is not None:
        if not isinstance(acts, list) or len(acts) != n_acts:
            raise _Err(f"attribute 'activations' must list {n_acts} functions, got {acts!r}")
        for spec in acts:
            if not isinstance(spec, dict) or spec.get("kind") not in GATE_ACTIVATIONS:
                raise _Err(f"gate activation must be one of {', '.join(GATE_ACTIVATIONS)}; got {spec!r}")
            _float(spec, "alpha", 0.0)
            _float(spec, "beta", 0.0)
    if a.get("clip") is not None and _float(a, "clip", 0.0) <= 0:
        raise _Err("attribute 'clip' must be positive")


def _lstm(a: dict):
    i, h = _int(a, "input_size"), _int(a, "hidden_size")
    p = _int(a, "proj_size", lo=0, default=0)
    _recurrent_common(a, 3)
    _bool(a, "input_forget")
    cell = _bool(a, "output_cell")
    r = p or h
    w = {"W_ih": ((i, 4 * h), True), "W_hh": ((r, 4 * h), True), "bias": ((4 * h,), False),
         "h0": ((r,), False), "c0": ((h,), False), "peephole": ((3 * h,), False)}
    if p:
        w["W_hr"] = ((h, p), True)
    return [i], r + (h if cell else 0), w


def _gru(a: dict):
    i, h = _int(a, "input_size"), _int(a, "hidden_size")
    _bool(a, "linear_before_reset", True)
    _recurrent_common(a, 2)
    return [i], h, {"W_ih": ((i, 3 * h), True), "W_hh": ((h, 3 * h), True),
                    "b_ih": ((3 * h,), False), "b_hh": ((3 * h,), False), "h0": ((h,), False)}


def _rnn(a: dict):
    i, h = _int(a, "input_size"), _int(a, "hidden_size")
    if a.get("nonlinearity", "tanh") not in ("tanh", "relu"):
        raise _Err(f"nonlinearity must be 'tanh' or 'relu', got {a.get('nonlinearity')!r}")
    _recurrent_common(a, 1)
    return [i], h, {"W_ih": ((i, h), True), "W_hh": ((h, h), True), "bias": ((h,), False),
                    "h0": ((h,), False)}


def _linear(a: dict):
    i, o = _int(a, "in_features"), _int(a, "out_features")
    return [i], o, {"W": ((i, o), True), "bias": ((o,), False)}


def _activation(a: dict):
    f = _int(a, "size")
    if a.get("kind") not in ACTIVATIONS:
        raise _Err(f"activation kind must be one of {', '.join(ACTIVATIONS)}; got {a.get('kind')!r}")
    _float(a, "alpha", DEFAULT_ALPHA.get(a["kind"], 0.0))
    _float(a, "beta", 0.0)
    group = _int(a, "axis_size", default=f)
    if f % group:
        raise _Err(f"attribute 'axis_size' {group} does not divide size {f}")
    return [f], f, {}


def _layernorm(a: dict):
    f = _int(a, "size")
    rows = _int(a, "rows", default=1)
    if _float(a, "eps", 1e-5) <= 0:
        raise _Err("attribute 'eps' must be positive")
    total = _int({"n": f * rows}, "n")
    return [total], total, {"weight": ((f,), False), "bias": ((f,), False)}


def _concat(a: dict):
    sizes = a.get("sizes")
    if not isinstance(sizes, list) or not 1 <= len(sizes) <= 64:
        raise _Err("attribute 'sizes' must be a list of 1-64 sizes")
    ins = [_int({"s": s}, "s") for s in sizes]
    return ins, _int({"s": sum(ins)}, "s"), {}


def _binary(a: dict):
    f = _int(a, "size")
    return [f, f], f, {}


def _binary_kind(a: dict):
    if a.get("kind") not in BINARY_KINDS:
        raise _Err(f"binary kind must be one of {', '.join(BINARY_KINDS)}; got {a.get('kind')!r}")
    return _binary(a)


def _scale(a: dict):
    f = _int(a, "size")
    return [f], f, {"scale": ((f,), False), "shift": ((f,), False)}


def _gather(a: dict):
    n_in, n_out = _int(a, "in_size"), _int(a, "out_size")
    return [n_in], n_out, {"index": ((n_out,), True)}


def _conv1d(a: dict):
    c, length, m, k = (_int(a, "in_channels"), _int(a, "in_length"), _int(a, "out_channels"),
                       _int(a, "kernel_size"))
    stride, dil, groups = _int(a, "stride", default=1), _int(a, "dilation", default=1), _int(a, "groups", default=1)
    pl, pr = _int(a, "pad_left", lo=0, default=0), _int(a, "pad_right", lo=0, default=0)
    if c % groups or m % groups:
        raise _Err(f"groups {groups} must divide in_channels {c} and out_channels {m}")
    span = dil * (k - 1) + 1
    if length + pl + pr < span:
        raise _Err(f"kernel span {span} exceeds padded length {length + pl + pr}")
    l_out = (length + pl + pr - span) // stride + 1
    return ([_int({"n": c * length}, "n")], _int({"n": m * l_out}, "n"),
            {"W": ((m, c // groups, k), True), "bias": ((m,), False)})


def _first_step(a: dict):
    f = _int(a, "size")
    return [f], f, {}


def _reduce(a: dict):
    if a.get("kind") not in REDUCE_KINDS:
        raise _Err(f"reduce kind must be one of {', '.join(REDUCE_KINDS)}; got {a.get('kind')!r}")
    outer, axis, inner = _int(a, "outer"), _int(a, "axis"), _int(a, "inner")
    return [_int({"n": outer * axis * inner}, "n")], _int({"n": outer * inner}, "n"), {}


OP_SPECS: dict[str, Spec] = {
    "LSTM": _lstm, "GRU": _gru, "RNN": _rnn, "Linear": _linear, "Activation": _activation,
    "LayerNorm": _layernorm, "Concat": _concat, "Add": _binary, "Mul": _binary,
    "Binary": _binary_kind, "Scale": _scale, "Gather": _gather, "Conv1d": _conv1d, "Reduce": _reduce,
    "FirstStep": _first_step,
}
# Ops that look at other time steps: a graph with one runs whole sequences only.
SEQUENCE_ONLY_OPS = ("FirstStep",)


def _name(v: Any, what: str) -> str:
    if not isinstance(v, str) or not 0 < len(v) <= 256:
        raise _Err(f"{what} must be a non-empty string, got {v!r}")
    return v


def parse_graph(doc: Any, tensors: dict[str, np.ndarray]) -> Graph:
    """Check a graph document against its tensors; return a Graph with float32 weights."""
    try:
        return _parse(doc, tensors)
    except _Err as e:
        raise ModelFormatError(f"invalid model graph: {e}") from None


def _parse(doc: Any, tensors: dict[str, np.ndarray]) -> Graph:
    if not isinstance(doc, dict):
        raise _Err("graph is not an object")
    for key in ("inputs", "outputs", "nodes"):
        if not isinstance(doc.get(key), list):
            raise _Err(f"graph has no list {key!r}")
    if len(doc["inputs"]) != 1:
        raise _Err(f"exactly one graph input is supported, got {len(doc['inputs'])}")
    if not doc["outputs"] or len(doc["nodes"]) > 10000:
        raise _Err("graph needs 1+ outputs and at most 10000 nodes")
    sizes: dict[str, int] = {}
    inputs = []
    for spec in doc["inputs"]:
        if not isinstance(spec, dict):
            raise _Err("graph input entry is not an object")
        name = _name(spec.get("name"), "input name")
        sizes[name] = _int(spec, "size")
        inputs.append((name, sizes[name]))
    nodes: list[Node] = []
    seen_nodes: set[str] = set()
    for nd in doc["nodes"]:
        if not isinstance(nd, dict):
            raise _Err("node entry is not an object")
        name = _name(nd.get("name"), "node name")
        where = f"node {name!r}"
        if name in seen_nodes:
            raise _Err(f"duplicate {where}")
        seen_nodes.add(name)
        op = nd.get("op")
        if op not in OP_SPECS:
            raise _Err(f"{where}: unknown op {op!r} (this build knows {', '.join(OP_SPECS)}); "
                       "the file may come from a newer lstm-infer")
        attrs = nd.get("attrs", {})
        ins, outs, wmap = nd.get("inputs"), nd.get("outputs"), nd.get("weights", {})
        if not isinstance(attrs, dict) or not isinstance(wmap, dict):
            raise _Err(f"{where}: attrs/weights must be objects")
        if not isinstance(ins, list) or not isinstance(outs, list) or len(outs) != 1:
            raise _Err(f"{where}: needs an input list and exactly one output")
        try:
            in_sizes, out_size, wspec = OP_SPECS[op](attrs)
        except _Err as e:
            raise _Err(f"{where} ({op}): {e}") from None
        if len(ins) != len(in_sizes):
            raise _Err(f"{where} ({op}): expects {len(in_sizes)} inputs, got {len(ins)}")
        for v, want in zip(ins, in_sizes):
            v = _name(v, f"{where} input")
            if v not in sizes:
                raise _Err(f"{where}: input {v!r} is not produced before this node")
            if sizes[v] != want:
                raise _Err(f"{where} ({op}): input {v!r} has size {sizes[v]}, expected {want}")
        out = _name(outs[0], f"{where} output")
        if out in sizes:
            raise _Err(f"{where}: value {out!r} is produced twice")
        sizes[out] = out_size
        for role in MATRIX_ROLES.get(op, ()):
            if role in wspec:
                wspec[f"{role}.scale"] = ((wspec[role][0][1],), False)
        weights: dict[str, np.ndarray] = {}
        for role, tname in wmap.items():
            if role not in wspec:
                raise _Err(f"{where} ({op}): unexpected weight {role!r}")
            if not isinstance(tname, str) or tname not in tensors:
                raise _Err(f"{where} ({op}): weight {role!r} refers to missing tensor {tname!r}")
            arr = tensors[tname]
            if tuple(arr.shape) != wspec[role][0]:
                raise _Err(f"{where} ({op}): weight {role!r} has shape {tuple(arr.shape)}, "
                           f"expected {wspec[role][0]}")
            if arr.dtype == np.int8:
                if role not in MATRIX_ROLES.get(op, ()):
                    raise _Err(f"{where} ({op}): weight {role!r} is int8; only weight matrices may be")
                weights[role] = arr
            elif arr.dtype.kind == "f":
                # fp16 is a storage format: widened once here, computed in float32
                weights[role] = arr if arr.dtype == np.float32 else arr.astype(np.float32)
            else:
                raise _Err(f"{where} ({op}): weight {role!r} has dtype {arr.dtype}, expected float or int8")
        for role in MATRIX_ROLES.get(op, ()):
            quantized = role in weights and weights[role].dtype == np.int8
            scale = weights.get(f"{role}.scale")
            if quantized != (scale is not None):
                raise _Err(f"{where} ({op}): int8 weight {role!r} needs per-column scales "
                           f"'{role}.scale' (and only int8 weights have them)")
            if scale is not None and not (np.isfinite(scale).all() and (scale >= 0).all()):
                raise _Err(f"{where} ({op}): scales of {role!r} must be finite and >= 0")
        missing = [r for r, (_, req) in wspec.items() if req and r not in weights]
        if missing:
            raise _Err(f"{where} ({op}): missing weights {missing}")
        if op == "Gather":
            idx = weights["index"]
            n_in = in_sizes[0]
            if not (np.all(idx == np.floor(idx)) and np.all(idx >= -1) and np.all(idx < n_in)):
                raise _Err(f"{where} (Gather): index values must be integers in [-1, {n_in})")
        nodes.append(Node(name, op, list(ins), [out], dict(attrs), weights))
    outputs, labels = [], []
    for spec in doc["outputs"]:
        if not isinstance(spec, dict):
            raise _Err("graph output entry is not an object")
        name = _name(spec.get("name"), "output name")
        if name not in sizes:
            raise _Err(f"graph output {name!r} is not produced by any node")
        if spec.get("size", sizes[name]) != sizes[name]:
            raise _Err(f"graph output {name!r} declares size {spec.get('size')}, graph gives {sizes[name]}")
        outputs.append((name, sizes[name]))
        labels.append(_name(spec.get("label", name), "output label"))
    if len(set(labels)) != len(labels):
        raise _Err(f"graph output labels are not unique: {labels}")
    return Graph(inputs, outputs, nodes, sizes, labels)
