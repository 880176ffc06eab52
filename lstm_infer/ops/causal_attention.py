"""CausalAttention: multi-head scaled dot-product self-attention where step t attends to
the steps before it (torch `nn.MultiheadAttention` / `F.scaled_dot_product_attention` with
a causal or banded mask), streamed with a key/value window in the stream's state.

Inputs: the step's query, key and value (each E = heads * head_dim, head h in columns
h*D:(h+1)*D, as torch splits them); output (E): per head h,
    y_h = sum_s softmax_s(scale * q_h . k_{s,h}) v_{s,h}
over s in the last `window` steps (t-window < s <= t). The projections before (in_proj)
and after (out_proj) are ordinary Linear nodes.

State: `keys`, `values` (window * E, a ring: step n is in slot n mod window) and `count`
(1): the number of steps seen while below `window`, then window + (n mod window), so it
stays small and exact in float32 on an endless stream.
- `limit` false: a sliding window (a banded mask of width `window`): the oldest entry is
  overwritten; streams forever.
- `limit` true: full causal attention with `window` as the maximum length chosen at
  conversion. A step past it is refused before anything is computed (return code 3 of
  the step entry points, `limit_error`), like a NaN input; run() refuses a longer
  sequence the same way.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..kernels import KERNEL
from .base import IN, OUT, OpDef, Signature, boolean, integer, new_row, size

OPCODE = 23
KEY, VALUE, HEADS, DIM, WINDOW, LIMIT, SCALE, KEYS, VALUES, COUNT, SCORES = range(3, 14)
MAX_WINDOW = 1 << 16


def spec(a: dict) -> Signature:
    H, D = integer(a, "heads", hi=4096), integer(a, "head_dim", hi=4096)
    W = integer(a, "window", hi=MAX_WINDOW)
    boolean(a, "limit")
    E = size(H * D)
    ring = size(W * E)
    return Signature([E, E, E], E, {"scale": ((1,), True)},
                     state={"keys": (ring, None), "values": (ring, None), "count": (1, None)})


def emit(em, node, ins: list[int], out: int, state: dict) -> None:
    a = node.attrs
    em.add_row(new_row(OPCODE, {IN: ins[0], KEY: ins[1], VALUE: ins[2], OUT: out,
                                HEADS: a["heads"], DIM: a["head_dim"], WINDOW: a["window"],
                                LIMIT: int(a.get("limit", False)), SCALE: em.weight(node, "scale"),
                                KEYS: state["keys"], VALUES: state["values"],
                                COUNT: state["count"], SCORES: em.alloc(a["window"])}))


@njit(**KERNEL)
def attend(q, k, v, keys, vals, cnt, y, scores, H, D, W, scale):
    """One step: append k, v to the ring, attend q over the valid entries, y (E,)."""
    E = H * D
    c = cnt[0]
    n = 0 if not c >= np.float32(0.0) else int(min(c, np.float32(2 * W - 1)))  # a hostile state stays in range
    p = n % W
    ks = keys[p * E:(p + 1) * E]
    vs = vals[p * E:(p + 1) * E]
    for j in range(E):
        ks[j] = k[j]
        vs[j] = v[j]
    n += 1
    if n >= 2 * W:
        n -= W
    cnt[0] = np.float32(n)
    valid = min(n, W)
    for h in range(H):
        o = h * D
        mx = -np.inf
        for s in range(valid):
            ko = s * E + o
            acc = np.float32(0.0)
            for j in range(D):
                acc += q[o + j] * keys[ko + j]
            acc *= scale
            scores[s] = acc
            mx = max(mx, acc)
        tot = np.float32(0.0)
        for s in range(valid):
            e = np.float32(math.exp(scores[s] - mx))
            scores[s] = e
            tot += e
        inv = np.float32(1.0) / tot
        for j in range(D):
            y[o + j] = np.float32(0.0)
        for s in range(valid):
            pw = scores[s] * inv
            vo = s * E + o
            for j in range(D):
                y[o + j] += pw * vals[vo + j]


@njit(**KERNEL)
def step(prog, r, w, st, sc):
    H, D, W = prog[r, HEADS], prog[r, DIM], prog[r, WINDOW]
    E = H * D
    q0, k0, v0, o0 = prog[r, IN], prog[r, KEY], prog[r, VALUE], prog[r, OUT]
    K0, V0, c0, s0 = prog[r, KEYS], prog[r, VALUES], prog[r, COUNT], prog[r, SCORES]
    attend(sc[q0:q0 + E], sc[k0:k0 + E], sc[v0:v0 + E], st[K0:K0 + W * E], st[V0:V0 + W * E],
           st[c0:c0 + 1], sc[o0:o0 + E], sc[s0:s0 + W], H, D, W, w[prog[r, SCALE]])


@njit(inline="always", **KERNEL)
def room_ok(prog, r, st, steps) -> bool:
    """Row r (a CausalAttention row) can take `steps` more steps: always for a sliding
    window, within `window` for full causal attention (`limit`)."""
    if prog[r, LIMIT] == 0:
        return True
    return st[prog[r, COUNT]] + steps <= prog[r, WINDOW]


@njit(**KERNEL)
def _sequence(q, k, v, keys, vals, cnt, y, lengths, H, D, W, scale):
    scores = np.empty(W, np.float32)
    for b in range(q.shape[1]):
        for t in range(lengths[b]):
            attend(q[t, b], k[t, b], v[t, b], keys[b], vals[b], cnt[b], y[t, b], scores,
                   H, D, W, scale)


def run_sequence(plan, node, ins: list[np.ndarray], lengths: np.ndarray,
                 state: dict) -> np.ndarray:
    """Every step with the step's own arithmetic (bit-identical to step()), from `state`
    (keys, values (B, window*E), count (B, 1)), left at each sequence's last step; zeros
    past a sequence's length. Full causal attention refuses sequences past `window`."""
    a = node.attrs
    W = a["window"]
    if a.get("limit") and (state["count"][:, 0] + lengths > W).any():
        raise ValueError(limit_message(node))
    q, k, v = (np.ascontiguousarray(x) for x in ins)
    y = np.zeros_like(q)
    _sequence(q, k, v, state["keys"], state["values"], state["count"], y,
              np.ascontiguousarray(lengths, np.int64), a["heads"], a["head_dim"], W,
              np.float32(node.weights["scale"][0]))
    return y


def limit_message(node) -> str:
    W = node.attrs["window"]
    return (f"causal attention {node.name!r} attends to at most {W} steps (its max_len, fixed "
            f"when the model was built: longer sequences need a model built with a larger "
            f"max_len, e.g. converted with convert_torch(..., attention_max_len=...), or a "
            f"sliding window); this sequence goes past step {W}")


def limit_error(graph, what: str) -> ValueError:
    """The error for a step refused with return code 3 (a full attention window)."""
    nodes = [n for n in graph.nodes if n.op == "CausalAttention" and n.attrs.get("limit")]
    msg = limit_message(nodes[0]) if nodes else "a causal attention window is full"
    return ValueError(f"{what}: {msg}; nothing was computed and the stream state was left "
                      "untouched (reset() the stream to start a new sequence)")


def describe(node, out_size: int) -> str:
    a = node.attrs
    kind = "max_len" if a.get("limit") else "window"
    return f"CausalAttention {a['heads']} heads x {a['head_dim']} ({kind} {a['window']})"


def example(rng) -> tuple[dict, dict]:
    return ({"heads": 2, "head_dim": 2, "window": 3, "limit": False},
            {"scale": np.array([0.7], np.float32)})


OPS = (OpDef("CausalAttention", spec, emit, recurrent=True, run_sequence=run_sequence,
             describe=describe, example=example),)
