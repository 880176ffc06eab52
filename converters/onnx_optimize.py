"""Clean-ups on the emitted IR graph before it is saved:

* drop nodes whose values reach no graph output (e.g. a Concat of final states that only
  served to pair state), keeping recurrent nodes whose state is paired with an input;
* fold a `Scale` into the `Linear` / `Conv1d` before it (MatMul + Add, Gemm + Mul, Conv +
  BatchNormalization) when that node's value has no other use;
* merge two consecutive `Scale`s;
* compute only the output positions of a `Conv1d` that its consumers read (conv_trim).
"""
from __future__ import annotations

import numpy as np

from lstm_infer.builder import GraphBuilder


def _uses(b: GraphBuilder) -> dict[str, int]:
    n: dict[str, int] = {}
    for nd in b.nodes:
        for v in nd["inputs"]:
            n[v] = n.get(v, 0) + 1
    for o in b.outputs:
        n[o["name"]] = n.get(o["name"], 0) + 1
    return n


def prune(b: GraphBuilder, keep_nodes: set[str]) -> None:
    live = {o["name"] for o in b.outputs}
    kept = []
    for nd in reversed(b.nodes):
        if nd["outputs"][0] in live or nd["name"] in keep_nodes:
            kept.append(nd)
            live.update(nd["inputs"])
    kept.reverse()
    b.nodes[:] = kept
    _drop_tensors(b)


def _drop_tensors(b: GraphBuilder) -> None:
    used = {t for nd in b.nodes for t in nd["weights"].values()}
    for t in list(b.tensors):
        if t not in used:
            del b.tensors[t]


def _w(b: GraphBuilder, nd: dict, role: str):
    t = nd["weights"].get(role)
    return None if t is None else b.tensors[t].astype(np.float64)


def _set(b: GraphBuilder, nd: dict, role: str, arr) -> None:
    name = f"{nd['name']}.{role}"
    b.tensors[name] = np.ascontiguousarray(np.asarray(arr, np.float32))
    nd["weights"][role] = name


def fuse_scales(b: GraphBuilder) -> None:
    changed = True
    while changed:
        changed = False
        uses = _uses(b)
        producer = {nd["outputs"][0]: nd for nd in b.nodes}
        for s in list(b.nodes):
            if s["op"] != "Scale":
                continue
            src = producer.get(s["inputs"][0])
            if src is None or uses.get(s["inputs"][0], 0) != 1:
                continue
            n = s["attrs"]["size"]
            scale = _w(b, s, "scale")
            shift = _w(b, s, "shift")
            sc = np.ones(n) if scale is None else scale
            sh = np.zeros(n) if shift is None else shift
            if src["op"] == "Linear":
                W, bias = _w(b, src, "W"), _w(b, src, "bias")
                _set(b, src, "W", W * sc[None, :])
                _set(b, src, "bias", (np.zeros(n) if bias is None else bias) * sc + sh)
            elif src["op"] == "Conv1d":
                M = src["attrs"]["out_channels"]
                L = n // M
                sc2, sh2 = sc.reshape(M, L), sh.reshape(M, L)
                if not (np.all(sc2 == sc2[:, :1]) and np.all(sh2 == sh2[:, :1])):
                    continue
                W, bias = _w(b, src, "W"), _w(b, src, "bias")
                _set(b, src, "W", W * sc2[:, :1, None])
                _set(b, src, "bias", (np.zeros(M) if bias is None else bias) * sc2[:, 0] + sh2[:, 0])
            elif src["op"] == "Scale":
                s0, h0 = _w(b, src, "scale"), _w(b, src, "shift")
                s0 = np.ones(n) if s0 is None else s0
                h0 = np.zeros(n) if h0 is None else h0
                _set(b, src, "scale", s0 * sc)
                _set(b, src, "shift", h0 * sc + sh)
            else:
                continue
            src["outputs"] = list(s["outputs"])
            b.nodes.remove(s)
            changed = True
            break
    _drop_tensors(b)


def optimize(b: GraphBuilder, keep_nodes: set[str]) -> None:
    from .conv_trim import trim_conv_outputs
    prune(b, keep_nodes)
    fuse_scales(b)
    trim_conv_outputs(b)
