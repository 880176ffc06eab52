"""IR clean-up: a `Conv1d` computes only the output positions that its consumers read.

Exported front ends often compute a convolution over a padded frame and then slice off
the edge positions (silero-vad's STFT conv computes 5 positions and the next Slice keeps
4). When every consumer of a Conv1d's value is a `Gather` (a Slice/Transpose/... of it),
the positions [lo, hi) they read are all the node has to compute: its window is moved by
lo*stride, its input cropped (or padded) to what those positions see, and the Gathers
re-indexed. The crop folds into the input's own Gather when the input is one (the
reflect/zero padding of the frame); otherwise the padding attributes absorb it when they
can, else a new Gather does it.
"""
from __future__ import annotations

import numpy as np

from lstm_infer.builder import GraphBuilder
from lstm_infer.graph import parse_graph

__all__ = ["trim_conv_outputs"]


def _consumers(b: GraphBuilder, value: str) -> list[dict]:
    return [nd for nd in b.nodes if value in nd["inputs"]]


def _trim_one(b: GraphBuilder, cv: dict) -> bool:
    out = cv["outputs"][0]
    if any(o["name"] == out for o in b.outputs):
        return False
    users = _consumers(b, out)
    if not users or any(u["op"] != "Gather" or u["inputs"] != [out] for u in users):
        return False
    a = cv["attrs"]
    C, L, M, K = a["in_channels"], a["in_length"], a["out_channels"], a["kernel_size"]
    s, d = a.get("stride", 1), a.get("dilation", 1)
    pl, pr = a.get("pad_left", 0), a.get("pad_right", 0)
    span = d * (K - 1) + 1
    L_out = (L + pl + pr - span) // s + 1
    idx = [b.tensors[u["weights"]["index"]].astype(np.int64) for u in users]
    read = np.concatenate([i[i >= 0] for i in idx])
    if read.size == 0:
        return False
    pos = read % L_out
    lo, hi = int(pos.min()), int(pos.max()) + 1
    if lo == 0 and hi == L_out:
        return False
    n_out = hi - lo
    start = lo * s - pl                      # first input position the kept outputs see
    L_new = (n_out - 1) * s + span           # input positions they see
    new_pl, new_pr = -start, start + L_new - L
    producer = next((nd for nd in b.nodes if nd["outputs"][0] == cv["inputs"][0]), None)
    src = np.arange(L_new) + start                                  # per channel
    ok = (src >= 0) & (src < L)
    crop = np.where(ok[None, :], np.arange(C)[:, None] * L + np.clip(src, 0, L - 1)[None, :], -1)
    if new_pl >= 0 and new_pr >= 0:
        attrs = {**a, "pad_left": new_pl, "pad_right": new_pr}
    else:
        if (producer is not None and producer["op"] == "Gather"
                and len(_consumers(b, producer["outputs"][0])) == 1):
            old = b.tensors[producer["weights"]["index"]].astype(np.int64)
            index = np.where(crop >= 0, old[np.maximum(crop, 0)], -1).reshape(-1)
            b.tensors[producer["weights"]["index"]] = index.astype(np.float32)
            producer["attrs"] = {**producer["attrs"], "out_size": int(index.size)}
        else:
            name = b.unique(f"{cv['name']}_crop")
            tname = f"{name}.index"
            b.tensors[tname] = crop.reshape(-1).astype(np.float32)
            gv = f"{name}.out"
            b.nodes.insert(b.nodes.index(cv), {
                "name": name, "op": "Gather", "inputs": [cv["inputs"][0]], "outputs": [gv],
                "attrs": {"in_size": C * L, "out_size": int(crop.size)}, "weights": {"index": tname}})
            cv["inputs"] = [gv]
        attrs = {**a, "in_length": int(L_new), "pad_left": 0, "pad_right": 0}
    cv["attrs"] = attrs
    for u, i in zip(users, idx):
        m, t = i // L_out, i % L_out
        new = np.where(i >= 0, m * n_out + (t - lo), -1)
        b.tensors[u["weights"]["index"]] = new.astype(np.float32)
        u["attrs"] = {**u["attrs"], "in_size": M * n_out}
    return True


def trim_conv_outputs(b: GraphBuilder) -> None:
    """Trim every Conv1d whose consumers read only some of its output positions."""
    changed = False
    for cv in [nd for nd in b.nodes if nd["op"] == "Conv1d"]:
        changed |= _trim_one(b, cv)
    if changed:
        g = parse_graph(b.document(), b.tensors)   # re-validate; sizes follow the new attrs
        b.sizes.update(g.sizes)
