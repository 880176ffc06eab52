"""Whole sequences through the graph, node by node: `Model.run` and long `Stream.step_many`
chunks.

Each node runs over a (T, B, F) block at once: ops with a whole-sequence kernel
(`run_sequence`: LSTM, GRU, RNN, Linear, History, ...) do their input projection for every
step as one matrix product and only the recurrence per step, the others go through their
one-node step program. A recurrent node's sequence kernel starts from a given state
(slot -> (B, size)) and leaves its final state there, which is what lets

- `run()` cut long sequences into blocks of time (the projections of a block stay in
  cache instead of a (T, B, 4H) array in memory: 327 MB for B=32, T=10000, H=64), and
- `Stream.step_many` run a chunk this way from the stream's state: in the chunk, each
  input projection and each Linear reads its weights once per 4 steps instead of once per
  step, with the same arithmetic per step as `step()` (matmat_acc is bit-identical per row
  to the mat-vec), so a chunk equals repeated step() calls exactly.
"""
from __future__ import annotations

import numpy as np

from .kernels.interpreter import step_sequence
from .ops import OPS
from .plan import NodeProgram, Plan

# Floats of one node's per-block intermediate (e.g. the gate projections, B * T_block * 4H)
# that a time block aims at: 512 KB, within L2 on the machines we measure on.
BLOCK_FLOATS = 1 << 17
MIN_BLOCK = 64


def carries_state(node) -> bool:
    """Whether the node's sequence kernel can start from, and hand back, a given state (int8
    nodes run through their step program from the initial state)."""
    return OPS[node.op].run_sequence is not None and not node.quantized


def chunkable(graph) -> bool:
    """A graph whose chunks can run node by node from a stream's state: every stateful node
    carries state, nothing reads another time step, and no op checks its input in the step
    kernels (Embedding's token ids, which must be refused before any state changes)."""
    return graph.streamable and all(
        (carries_state(n) or not n.is_recurrent) and n.op != "Embedding" for n in graph.nodes)


def matrix_bytes(graph) -> int:
    """Bytes of the graph's weight matrices (2-D weights), what a step reads at least."""
    return sum(w.nbytes for n in graph.nodes for w in n.weights.values() if w.ndim == 2)


def initial_state(node, batch: int) -> dict[str, np.ndarray]:
    """slot -> (batch, size) float32: the node's initial state (weight or zeros) per sequence."""
    out = {}
    for slot, (n, role) in OPS[node.op].spec(node.attrs).state.items():
        init = node.weights.get(role) if role else None
        row = np.zeros(n, np.float32) if init is None else np.asarray(init, np.float32).reshape(n)
        out[slot] = np.empty((batch, n), np.float32)
        out[slot][:] = row
    return out


def block_length(graph, batch: int) -> int:
    """Steps per time block: BLOCK_FLOATS over the widest per-step array of a node."""
    widest = max([4 * n.attrs.get("hidden_size", 0) for n in graph.nodes] + [1])
    return max(MIN_BLOCK, BLOCK_FLOATS // (batch * widest))


def run_graph(plan: Plan, graph, xt: np.ndarray, lengths: np.ndarray,
              states: dict | None = None) -> np.ndarray:
    """xt (T, B, I) time-major -> (T, B, O). `states` (node -> slot -> (B, size)) is where
    the recurrent nodes start and what they leave behind; None: their initial state."""
    T, B, _ = xt.shape
    # `states` given (a stream's chunk) is checked first: chunkable() costs ~2 us a call
    blocked = (states is not None or chunkable(graph)) and bool((lengths == T).all())
    if states is None:
        states = {n.name: initial_state(n, B) for n in graph.nodes if n.is_recurrent}
    step = block_length(graph, B) if blocked else T
    if step >= T:
        return _run_block(plan, graph, xt, lengths, states)
    full = np.full(B, step, np.int64)
    # the blocks go straight into a (B, T, O) array, returned as its (T, B, O) view: run() and
    # step_many want (B, T, O) / (T, O), so no concatenation and no transposed copy after it
    out = None
    for t0 in range(0, T, step):
        blk = np.ascontiguousarray(xt[t0:t0 + step])
        y = _run_block(plan, graph, blk, full if blk.shape[0] == step else
                       np.full(B, blk.shape[0], np.int64), states)
        if out is None:
            out = np.empty((B, T, y.shape[-1]), y.dtype)
        out[:, t0:t0 + blk.shape[0]] = y.transpose(1, 0, 2)
    return out.transpose(1, 0, 2)


def _run_block(plan: Plan, graph, xt: np.ndarray, lengths: np.ndarray, states: dict) -> np.ndarray:
    I = xt.shape[-1]
    values, pos = {}, 0
    for name, n in graph.inputs:
        values[name] = xt if n == I else np.ascontiguousarray(xt[..., pos:pos + n])
        pos += n
    for node in graph.nodes:
        ins = [values[v] for v in node.inputs]
        values[node.outputs[0]] = _run_node(plan, node, ins, lengths, states.get(node.name))
    if len(graph.outputs) == 1:  # a node's own new array is returned as it is (no copy)
        y = values[graph.outputs[0][0]]
        if not np.may_share_memory(y, xt):
            return y
    return np.concatenate([values[name] for name, _ in graph.outputs], axis=-1)


def _run_node(plan: Plan, node, ins: list[np.ndarray], lengths: np.ndarray,
              state: dict | None) -> np.ndarray:
    """One node over a (T, B, F) sequence: the op's sequence kernel where it has one (and
    float weights), else its one-node step program."""
    op = OPS[node.op]
    if op.run_sequence is not None and not node.quantized:
        if node.is_recurrent:
            return op.run_sequence(plan, node, ins, lengths, state)
        return op.run_sequence(plan, node, ins, lengths)
    return _run_node_program(plan.node_programs[node.name], plan.arena, node, ins, lengths)


def _run_node_program(npg: NodeProgram, arena: np.ndarray, node, ins: list[np.ndarray],
                      lengths: np.ndarray) -> np.ndarray:
    """A node through its one-node step program: every (t, b) row for per-step ops; for a
    recurrent node each sequence in time order (backwards if `reverse`), from the initial
    state. This is how a new op runs in run() before it has a sequence kernel."""
    x = ins[0]
    T, B, _ = x.shape
    out_size = int(npg.prog[0, 4])
    S = int(npg.prog[0, 5])
    if node.is_recurrent:
        mem = np.zeros((1, S + npg.scratch_size), np.float32)
        out = np.zeros((T, B, out_size), np.float32)
        rev = bool(node.attrs.get("reverse"))
        for b in range(B):
            L = int(lengths[b])
            if L == 0:
                continue
            xs = x[:L, b]
            xs = np.ascontiguousarray(xs[::-1] if rev else xs)
            ys = np.empty((L, out_size), np.float32)
            mem[0, :S] = npg.init_state
            step_sequence(npg.prog, arena, mem, xs.reshape(-1), ys.reshape(-1), False)
            out[:L, b] = ys[::-1] if rev else ys
        return out
    xs = np.concatenate(ins, axis=-1) if len(ins) > 1 else x
    xs = np.ascontiguousarray(xs.reshape(T * B, -1))
    ys = np.empty((T * B, out_size), np.float32)
    step_sequence(npg.prog, arena, np.zeros((1, S + npg.scratch_size), np.float32), xs.reshape(-1),
                  ys.reshape(-1), False)
    return ys.reshape(T, B, out_size)
