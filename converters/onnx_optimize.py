"""Clean-ups on the emitted IR graph before it is saved:

* drop nodes whose values reach no graph output (e.g. a Concat of final states that only
  served to pair state), keeping recurrent nodes whose state is paired with an input;
* fold a `Scale` into the `Linear` / `Conv1d` before it (MatMul + Add, Gemm + Mul, Conv +
  BatchNormalization), or into an `Embedding`'s table (a DequantizeLinear after the
  lookup), when that node's value has no other use;
* merge two consecutive `Scale`s;
* give an LSTM whose Y_c is only paired state its plain h output back (`drop_unread_cells`);
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
                if "W.scale" in src["weights"]:  # int8 W: its scales stay per column
                    continue
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
            elif src["op"] == "Embedding":  # every id's row: table * scale + shift
                D = src["attrs"]["embedding_dim"]
                sc2, sh2 = sc.reshape(-1, D), sh.reshape(-1, D)
                if not (np.all(sc2 == sc2[:1]) and np.all(sh2 == sh2[:1])):
                    continue
                _set(b, src, "table", _w(b, src, "table") * sc2[0] + sh2[0])
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


def drop_unread_cells(b: GraphBuilder) -> None:
    """An LSTM given `output_cell` (its Y_c is used) whose c half no node reads, because Y_c
    only returned state that is now paired with an input, outputs h alone again. Its
    readers (Gathers, and Concats read by Gathers) are re-indexed; Gathers that then copy
    their input unchanged go."""
    outs = {o["name"] for o in b.outputs}
    changed = True
    while changed:
        changed = False
        cons = _consumers(b)
        for nd in b.nodes:
            if nd["op"] != "LSTM" or not nd["attrs"].get("output_cell"):
                continue
            v, H = nd["outputs"][0], nd["attrs"]["hidden_size"]
            width = nd["attrs"].get("proj_size") or H
            reads = _reads(b, cons, outs, v)
            if reads is None or any(np.any(r >= width) for r in reads):
                continue
            del nd["attrs"]["output_cell"]
            _cut(b, cons, v, width, width + H)
            changed = True
            break
    for u in list(b.nodes):
        g = u["outputs"][0]
        if u["op"] == "Gather" and g not in outs and u["attrs"]["in_size"] == u["attrs"]["out_size"] \
                and np.array_equal(b.tensors[u["weights"]["index"]], np.arange(u["attrs"]["in_size"])):
            for other in b.nodes:
                other["inputs"] = [u["inputs"][0] if x == g else x for x in other["inputs"]]
            b.nodes.remove(u)
    _drop_tensors(b)


def _consumers(b: GraphBuilder) -> dict[str, list]:
    cons: dict[str, list] = {}
    for nd in b.nodes:
        for v in nd["inputs"]:
            cons.setdefault(v, []).append(nd)
    return cons


def _reads(b: GraphBuilder, cons: dict, outs: set, v: str) -> list | None:
    """Positions of value `v` that its readers read, or None when a reader may read any."""
    if v in outs:
        return None
    found = []
    for u in cons.get(v, []):
        if u["op"] == "Gather":
            idx = b.tensors[u["weights"]["index"]].astype(np.int64)
            found.append(idx[idx >= 0])
        elif u["op"] == "Concat" and u["inputs"].count(v) == 1:
            k = u["inputs"].index(v)
            off, n = sum(u["attrs"]["sizes"][:k]), u["attrs"]["sizes"][k]
            sub = _reads(b, cons, outs, u["outputs"][0])
            if sub is None:
                return None
            found += [p[(p >= off) & (p < off + n)] - off for p in sub]
        else:
            return None
    return found


def _cut(b: GraphBuilder, cons: dict, v: str, start: int, stop: int) -> None:
    """Remove positions [start, stop) of value `v` (read by nobody) from its readers."""
    n = stop - start
    b.sizes[v] -= n
    for u in cons.get(v, []):
        if u["op"] == "Gather":
            name = u["weights"]["index"]
            idx = b.tensors[name]
            b.tensors[name] = np.where(idx >= stop, idx - n, idx).astype(np.float32)
            u["attrs"]["in_size"] -= n
        else:  # Concat
            k = u["inputs"].index(v)
            sizes = list(u["attrs"]["sizes"])
            off = sum(sizes[:k])
            sizes[k] -= n
            u["attrs"]["sizes"] = sizes
            _cut(b, cons, u["outputs"][0], off + start, off + stop)


def optimize(b: GraphBuilder, keep_nodes: set[str]) -> None:
    from .conv_trim import trim_conv_outputs
    prune(b, keep_nodes)
    drop_unread_cells(b)
    fuse_scales(b)
    trim_conv_outputs(b)
