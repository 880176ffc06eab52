"""Compile a validated Graph into a step program and the arenas the kernels read.

The weights of all nodes are laid out once in one float32 arena (each tensor 64-byte
aligned); node weights are re-pointed at views of it, so the step kernel and the
sequence path read the same memory. Activations get slots in a per-stream scratch
row, recurrent state gets slots in a per-stream state row.

Besides the whole-model step program, every node whose op has no whole-sequence kernel
(ops/*.py `run_sequence`), or has int8 weights, gets a one-node program: run() applies it
to all (time, batch) rows, or steps a stateful node through each sequence, with the same
interpreter, so each op's per-step semantics are written exactly once.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import ModelFormatError
from .graph import Graph, Node
from .kernels.linalg import aligned, aligned_empty
from .kernels.q16 import fill_q16_block, q16_block_floats
from .ops import OPS
from .ops.base import PROG_WIDTH
from .ops.concat import copy_row
from .ops.recurrent import CFG_SIZE, cell_config

_ALIGN = 16  # floats: 64 bytes
_MAX_SCRATCH_FLOATS = 1 << 28  # 1 GiB per stream: a graph needing more is not a real model


@dataclass
class StateSlot:
    name: str      # "<node>.h" or "<node>.c"
    offset: int
    size: int


@dataclass
class NodeProgram:
    """A one-node program for run(): inputs packed side by side in scratch. A memory row
    is [state (S floats, S = prog[0, 5]) | scratch]; init_state is its starting state."""
    prog: np.ndarray
    scratch_size: int
    init_state: np.ndarray


@dataclass
class Plan:
    prog: np.ndarray          # (n_ops + 1, PROG_WIDTH) int64
    arena: np.ndarray         # float32 weights + constants
    init_state: np.ndarray    # (S,) float32: the state part of a stream's memory row
    state_slots: list[StateSlot]
    scratch_size: int
    input_size: int
    output_size: int
    output_slices: list[tuple[str, int, int]]  # (label, start, stop) inside the output vector
    node_programs: dict[str, NodeProgram] = field(default_factory=dict)
    cfg: dict[str, np.ndarray] = field(default_factory=dict)  # recurrent node -> config view
    # node -> index of its (first) row in `prog`: sequence kernels read the same fields
    # (e.g. a packed copy of W_hh in `arena`) as the step kernels
    node_rows: dict[str, int] = field(default_factory=dict)
    # (node, role) -> that matrix packed by linalg.pack_panels for the one-sequence input
    # projections (ops/linear.seq_panels), made on the first chunk or run() that needs it
    panels: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)


class _Arena:
    """Float32 arena shared by every program of a model; tensors deduplicated by identity."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []
        self.size = 0
        self.offsets: dict[int, int] = {}
        self._keep: list[np.ndarray] = []
        self._derived: dict[tuple[int, str], int] = {}

    def add(self, arr: np.ndarray) -> int:
        key = id(arr)
        if key in self.offsets:
            return self.offsets[key]
        off = self.size
        flat = np.ascontiguousarray(arr, dtype=np.float32).ravel()
        pad = (-flat.size) % _ALIGN
        self.parts.append(flat)
        if pad:
            self.parts.append(np.zeros(pad, np.float32))
        self.size += flat.size + pad
        self.offsets[key] = off
        self._keep.append(arr)  # keep alive so ids stay unique
        return off

    def add_int8(self, arr: np.ndarray) -> int:
        """Pack an int8 tensor into the float arena; returns its *byte* offset."""
        key = id(arr)
        if key not in self.offsets:
            raw = np.ascontiguousarray(arr, dtype=np.int8).ravel()
            raw = np.concatenate([raw, np.zeros((-raw.size) % (4 * _ALIGN), np.int8)])
            off = self.size
            self.parts.append(raw.view(np.float32))
            self.size += raw.size // 4
            self.offsets[key] = off
            self._keep.append(arr)
        return self.offsets[key] * 4

    def weight(self, node: Node, role: str) -> int:
        """Float offset of a float weight, byte offset of an int8 one, -1 if absent."""
        arr = node.weights.get(role)
        if arr is None:
            return -1
        return self.add_int8(arr) if arr.dtype == np.int8 else self.add(arr)

    def derived(self, src: np.ndarray, key: str, make) -> int:
        """Offset of `make(src)`, a re-laid-out copy of a weight, made once per arena (the
        step program and the one-node programs share it)."""
        k = (id(src), key)
        if k not in self._derived:
            self._keep.append(src)
            self._derived[k] = self.add(make(src))
        return self._derived[k]

    def scale(self, node: Node, role: str) -> int:
        """Offset of the per-column scales of an int8 matrix, -1 for a float matrix. The
        scales are followed by the matrix packed for the integer mat-vec (q16.q16_block):
        the int8 weights held twice, the plain copy for matvec_q8 and the CUDA kernels."""
        s = node.weights.get(f"{role}.scale")
        if s is None:
            return -1
        k = (id(s), "q16")
        if k not in self._derived:
            Q = node.weights[role]
            self._keep += [s, Q]
            self._derived[k] = self._add_filled(q16_block_floats(Q.shape),
                                                lambda out: fill_q16_block(out, Q, s))
        return self._derived[k]

    def _add_filled(self, n: int, fill) -> int:
        """Offset of n floats that build() fills by calling fill(view) (no temporary copy)."""
        off = self.size
        self.parts.append((n + (-n) % _ALIGN, fill))
        self.size += n + (-n) % _ALIGN
        return off

    def build(self) -> np.ndarray:
        """The arena, on a cache line (linalg.aligned), so that the 64-byte offsets of its
        tensors are 64-byte addresses too."""
        if not self.parts:
            return aligned(np.zeros(_ALIGN, np.float32))
        # filled in place: np.concatenate and then a copy left an arena-sized freed block in
        # the process's resident memory (glibc keeps it: a 3 MB int8 arena cost 6.7 MB RSS)
        w = aligned_empty((self.size,), np.float32)
        pos = 0
        for p in self.parts:
            if isinstance(p, tuple):  # _add_filled
                n, fill = p
                fill(w[pos:pos + n])
            else:
                n = p.size
                w[pos:pos + n] = p
            pos += n
        return w


class _Emitter:
    """Emits program rows for nodes, allocating scratch (and state) as it goes. Op modules'
    `emit` functions call: alloc, weight, derived, scale, const, cell_config, add_row."""

    def __init__(self, arena: _Arena):
        self.arena = arena
        self.rows: list[list[int]] = []
        self.scratch = 0
        self.state_size = 0
        self.state_slots: list[StateSlot] = []
        self.init_parts: list[tuple[int, np.ndarray]] = []
        self.cfg_offsets: dict[str, int] = {}

    def alloc(self, n: int) -> int:
        off = self.scratch
        self.scratch += n + (-n) % _ALIGN
        return off

    def state(self, name: str, size: int, init: np.ndarray | None) -> int:
        off = self.state_size
        self.state_slots.append(StateSlot(name, off, size))
        self.state_size += size + (-size) % _ALIGN
        if init is not None:
            self.init_parts.append((off, init))
        return off

    def weight(self, node: Node, role: str) -> int:
        return self.arena.weight(node, role)

    def derived(self, node: Node, role: str, key: str, make) -> int:
        """Offset of `make(weight)`: a float32 copy of a weight in a layout the op's kernel
        prefers (e.g. Conv1d's packed matrix), built once per model."""
        return self.arena.derived(node.weights[role], key, make)

    def scale(self, node: Node, role: str) -> int:
        return self.arena.scale(node, role)

    def const(self, *values: float) -> int:
        return self.arena.add(np.array(values, np.float32))

    def cell_config(self, node: Node) -> int:
        """Offset of a recurrent node's config block (ops/recurrent.py) in the weights."""
        off = self.arena.add(cell_config(node))
        self.cfg_offsets[node.name] = off
        return off

    def add_row(self, row: list[int]) -> None:
        assert len(row) == PROG_WIDTH
        self.rows.append(row)

    def emit(self, node: Node, ins: list[int]) -> int:
        """Rows for one node reading scratch offsets `ins`; returns its output offset."""
        sig = OPS[node.op].spec(node.attrs)
        out = self.alloc(sig.output)
        state = {slot: self.state(f"{node.name}.{slot}", n, node.weights.get(init) if init else None)
                 for slot, (n, init) in sig.state.items()}
        OPS[node.op].emit(self, node, ins, out, state)
        return out

    def program(self, in_off: int, in_size: int, out_off: int, out_size: int,
                state_size: int = 0) -> np.ndarray:
        if self.scratch > _MAX_SCRATCH_FLOATS:
            raise ModelFormatError(f"model needs {self.scratch:,} floats of activation scratch per "
                                   f"stream (limit {_MAX_SCRATCH_FLOATS:,}); the file is corrupt or hostile")
        header = [len(self.rows), in_off, in_size, out_off, out_size, state_size] + [0] * (PROG_WIDTH - 6)
        return np.array([header] + self.rows, dtype=np.int64)


def _node_program(node: Node, graph: Graph, arena: _Arena) -> NodeProgram:
    em = _Emitter(arena)
    sizes = [graph.sizes[v] for v in node.inputs]
    total = sum(sizes)
    base = em.alloc(total)
    ins, pos = [], base
    for n in sizes:
        ins.append(pos)
        pos += n
    out_size = graph.sizes[node.outputs[0]]
    out = em.emit(node, ins)
    init = np.zeros(em.state_size, np.float32)
    for off, arr in em.init_parts:
        init[off:off + arr.size] = arr
    return NodeProgram(em.program(base, total, out, out_size, em.state_size), max(em.scratch, 1), init)


def build_plan(graph: Graph) -> Plan:
    arena = _Arena()
    em = _Emitter(arena)
    slot: dict[str, int] = {}
    # Several inputs sit side by side in one region, so the step kernels copy one vector:
    # the inputs concatenated in the graph's order.
    in_size = sum(n for _, n in graph.inputs)
    in_off = em.alloc(in_size)
    pos = in_off
    for name, n in graph.inputs:
        slot[name] = pos
        pos += n
    node_rows = {}
    for node in graph.nodes:
        node_rows[node.name] = len(em.rows) + 1  # row 0 is the header
        slot[node.outputs[0]] = em.emit(node, [slot[v] for v in node.inputs])
    # Graph outputs are gathered into one contiguous output slot (COPY rows).
    out_total = sum(n for _, n in graph.outputs)
    out_off = em.alloc(out_total)
    output_slices, pos = [], 0
    for (name, n), label in zip(graph.outputs, graph.output_labels):
        em.add_row(copy_row(slot[name], out_off + pos, n))
        output_slices.append((label, pos, pos + n))
        pos += n
    state_size = max(em.state_size, _ALIGN)
    prog = em.program(in_off, in_size, out_off, out_total, state_size)
    # run() steps a node through its own program when the op has no whole-sequence
    # kernel, or when its weights are int8 (the sequence kernels read float32 only).
    node_programs = {n.name: _node_program(n, graph, arena) for n in graph.nodes
                     if n.quantized or OPS[n.op].run_sequence is None}
    w = arena.build()
    # Re-point node weights at the arena so the sequence path reads the same floats.
    for node in graph.nodes:
        for role, arr in list(node.weights.items()):
            off = arena.offsets.get(id(arr))
            if off is None:
                continue
            if arr.dtype == np.int8:
                node.weights[role] = w.view(np.int8)[4 * off:4 * off + arr.size].reshape(arr.shape)
            else:
                node.weights[role] = w[off:off + arr.size].reshape(arr.shape)
    init = np.zeros(state_size, np.float32)
    for off, arr in em.init_parts:
        init[off:off + arr.size] = arr
    cfg = {name: w[off:off + CFG_SIZE] for name, off in em.cfg_offsets.items()}
    return Plan(prog, w, init, em.state_slots, max(em.scratch, 1), in_size, out_total,
                output_slices, node_programs, cfg, node_rows)
