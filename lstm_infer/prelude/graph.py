"""An untrusted prelude document -> a validated `Prelude`, and running it on images.

The document (docs/FORMAT.md, "The prelude"): the image input's name, channels and
height (the width varies), nodes in topological order (each one output, checked against
its op's spec like the per-step graph's nodes), and the value that becomes the sequence:
it must be the per-step graph's only input, of size channels * height.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import SpecError
from ..ops.base import integer
from . import PRELUDE_OPS
from .base import Shape, Width

MAX_NODES = 4096
MAX_WIDTH = 1 << 20  # widest image run() takes


@dataclass
class PreludeNode:
    name: str
    op: str
    inputs: list[str]
    output: str
    attrs: dict[str, Any]
    weights: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Prelude:
    input_name: str
    channels: int
    height: int
    nodes: list[PreludeNode]
    output: str
    shapes: dict[str, Shape]
    min_width: int = 1

    @property
    def image_shape(self) -> tuple:
        """Per-sample input shape; None marks the variable width."""
        return (self.channels, self.height, None)

    def param_count(self) -> int:
        return sum(int(w.size) for n in self.nodes for w in n.weights.values())

    def check_width(self, w: int) -> None:
        if w < self.min_width:
            raise ValueError(f"the image is {w} pixels wide; this model needs at least "
                             f"{self.min_width} (narrower images vanish in its convolutions)")

    def run(self, images: np.ndarray) -> np.ndarray:
        """(B, C, H, W) float32 images -> the (T, B, F) sequence of the per-step graph."""
        self.check_width(images.shape[3])
        last_use = {}
        for k, n in enumerate(self.nodes):
            for v in n.inputs:
                last_use[v] = k
        values = {self.input_name: images}
        for k, n in enumerate(self.nodes):
            values[n.output] = PRELUDE_OPS[n.op].run(n.attrs, n.weights,
                                                     [values[v] for v in n.inputs])
            for v in n.inputs:  # free what no later node reads
                if last_use[v] == k and v != self.output:
                    values.pop(v, None)
        y = values[self.output]
        B, C, H, T = y.shape
        return np.ascontiguousarray(y.reshape(B, C * H, T).transpose(2, 0, 1), dtype=np.float32)


def _name(v: Any, what: str) -> str:
    if not isinstance(v, str) or not 0 < len(v) <= 256:
        raise SpecError(f"{what} must be a non-empty string, got {v!r}")
    return v


def _weights(where: str, wmap: Any, wspec: dict, tensors: dict) -> dict[str, np.ndarray]:
    if not isinstance(wmap, dict):
        raise SpecError(f"{where}: weights must be an object")
    out = {}
    for role, tname in wmap.items():
        if role not in wspec:
            raise SpecError(f"{where}: unexpected weight {role!r}")
        if not isinstance(tname, str) or tname not in tensors:
            raise SpecError(f"{where}: weight {role!r} refers to missing tensor {tname!r}")
        arr = tensors[tname]
        if tuple(arr.shape) != wspec[role][0]:
            raise SpecError(f"{where}: weight {role!r} has shape {tuple(arr.shape)}, "
                            f"expected {wspec[role][0]}")
        if arr.dtype.kind != "f":
            raise SpecError(f"{where}: weight {role!r} has dtype {arr.dtype}; prelude weights are "
                            "float32 or float16")
        out[role] = np.ascontiguousarray(arr, dtype=np.float32)
    missing = [r for r, (_, req) in wspec.items() if req and r not in out]
    if missing:
        raise SpecError(f"{where}: missing weights {missing}")
    return out


def parse_prelude(doc: Any, tensors: dict, graph_inputs: list[tuple[str, int]]) -> Prelude:
    """Check a prelude document against its tensors and the per-step graph's inputs."""
    name, C, H, nodes, shapes = _check_nodes(doc, tensors)
    output = _name(doc.get("output"), "prelude output")
    if output not in shapes or output == name:
        raise SpecError(f"prelude output {output!r} is not produced by a prelude node")
    final = shapes[output]
    if not isinstance(final.w, Width):
        raise SpecError(f"prelude output {output!r} has a fixed width {final.w}; its width is "
                        "the time axis and must follow the image's")
    if len(graph_inputs) != 1 or graph_inputs[0] != (output, final.c * final.h):
        raise SpecError(f"prelude output {output!r} {final.describe()} must be the graph's only "
                        f"input, of size {final.c * final.h}; the graph takes {graph_inputs}")
    return Prelude(name, C, H, nodes, output, shapes, _min_width(shapes))


def check_prelude_nodes(doc: Any, tensors: dict) -> dict[str, Shape]:
    """The shape of every value of a prelude document (for converters: where to cut)."""
    return _check_nodes(doc, tensors)[4]


def _check_nodes(doc: Any, tensors: dict):
    if not isinstance(doc, dict) or not isinstance(doc.get("input"), dict) \
            or not isinstance(doc.get("nodes"), list):
        raise SpecError("prelude must be an object with an 'input' object and a 'nodes' list")
    inp = doc["input"]
    name = _name(inp.get("name"), "prelude input name")
    C = integer(inp, "channels", 1, 65536)
    H = integer(inp, "height", 1, 65536)
    shapes: dict[str, Shape] = {name: Shape(C, H, Width())}
    if not 1 <= len(doc["nodes"]) <= MAX_NODES:
        raise SpecError(f"prelude needs 1-{MAX_NODES} nodes, got {len(doc['nodes'])}")
    nodes, seen = [], set()
    for nd in doc["nodes"]:
        if not isinstance(nd, dict):
            raise SpecError("prelude node entry is not an object")
        nname = _name(nd.get("name"), "prelude node name")
        where = f"prelude node {nname!r}"
        if nname in seen:
            raise SpecError(f"duplicate {where}")
        seen.add(nname)
        op = nd.get("op")
        if op not in PRELUDE_OPS:
            raise SpecError(f"{where}: unknown prelude op {op!r} (this build knows "
                            f"{', '.join(sorted(PRELUDE_OPS))}); the file may come from a newer lstm-infer")
        opdef = PRELUDE_OPS[op]
        where = f"{where} ({op})"
        ins, outs, attrs = nd.get("inputs"), nd.get("outputs"), nd.get("attrs", {})
        if not isinstance(ins, list) or len(ins) != opdef.arity:
            raise SpecError(f"{where}: expects {opdef.arity} inputs, got {ins!r}")
        if not isinstance(outs, list) or len(outs) != 1 or not isinstance(attrs, dict):
            raise SpecError(f"{where}: needs exactly one output and an attrs object")
        for v in ins:
            if _name(v, f"{where} input") not in shapes:
                raise SpecError(f"{where}: input {v!r} is not produced before this node")
        out = _name(outs[0], f"{where} output")
        if out in shapes:
            raise SpecError(f"{where}: value {out!r} is produced twice")
        try:
            shape, wspec = opdef.spec(attrs, [shapes[v] for v in ins])
        except SpecError as e:
            raise SpecError(f"{where}: {e}") from None
        shapes[out] = shape
        weights = _weights(where, nd.get("weights", {}), wspec, tensors)
        nodes.append(PreludeNode(nname, op, list(ins), out, dict(attrs), weights))
    return name, C, H, nodes, shapes


def _min_width(shapes: dict[str, Shape]) -> int:
    """The narrowest image for which every value keeps a width >= 1 (widths grow with the
    input's, so a doubling search then a bisection finds it)."""
    widths = [s.w for s in shapes.values() if isinstance(s.w, Width)]

    def ok(w: int) -> bool:
        return all(x.at(w) >= 1 for x in widths)
    hi = 1
    while not ok(hi):
        hi *= 2
        if hi > MAX_WIDTH:
            raise SpecError(f"no image up to {MAX_WIDTH} pixels wide survives the prelude's windows")
    lo = hi // 2
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi
