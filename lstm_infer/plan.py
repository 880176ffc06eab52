"""Compile a validated Graph into a step program and the arenas the kernels read.

The weights of all nodes are laid out once in one float32 arena (each tensor 64-byte
aligned); node weights are re-pointed at views of it, so the step kernel and the
sequence path read the same memory. Activations get slots in a per-stream scratch
row, recurrent state gets slots in a per-stream state row.

Besides the whole-model step program, every non-recurrent node except Linear also
gets a one-node program: run() applies it to all (time, batch) rows with the same
interpreter, so each op's semantics are written exactly once.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import ModelFormatError
from .graph import DEFAULT_ALPHA, Graph, Node
from .kernels.cells import ACT_CODES, CFG_SIZE, GATE_ACT_CODES
from .kernels.program import (BINARY_CODES, OP_ACT, OP_BINARY, OP_CONV1D, OP_COPY, OP_GATHER,
                              OP_GRU, OP_LINEAR, OP_LNORM, OP_LSTM, OP_REDUCE, OP_RNN, OP_SCALE,
                              PROG_WIDTH, REDUCE_CODES)

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


class _Arena:
    """Float32 arena shared by every program of a model; tensors deduplicated by identity."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []
        self.size = 0
        self.offsets: dict[int, int] = {}
        self._keep: list[np.ndarray] = []

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

    def scale(self, node: Node, role: str) -> int:
        """Offset of the per-column scales of an int8 matrix, -1 for a float matrix."""
        return self.weight(node, f"{role}.scale")

    def build(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros(_ALIGN, np.float32)


def recurrent_cfg(node: Node) -> np.ndarray:
    """The CFG_SIZE config block of a recurrent node (see kernels/cells.py)."""
    a = node.attrs
    cfg = np.zeros(CFG_SIZE, np.float32)
    acts = a.get("activations")
    if node.op == "RNN" and not acts and a.get("nonlinearity", "tanh") == "relu":
        acts = [{"kind": "relu"}]
    general = bool(acts) or bool(a.get("clip")) or bool(a.get("input_forget")) or "peephole" in node.weights
    cfg[0] = 1.0 if general else 0.0
    cfg[1] = float(a.get("clip") or 0.0)
    cfg[2] = 1.0 if a.get("input_forget") else 0.0
    cfg[3] = 1.0 if "peephole" in node.weights else 0.0
    defaults = {"LSTM": ["sigmoid", "tanh", "tanh"], "GRU": ["sigmoid", "tanh"], "RNN": ["tanh"]}[node.op]
    for k, kind in enumerate(defaults):
        spec = acts[k] if acts else {"kind": kind}
        cfg[4 + 3 * k] = GATE_ACT_CODES[spec["kind"]]
        cfg[5 + 3 * k] = float(spec.get("alpha", 0.0))
        cfg[6 + 3 * k] = float(spec.get("beta", 0.0))
    return cfg


class _Emitter:
    """Emits program rows for nodes, allocating scratch (and state) as it goes."""

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

    def const(self, *values: float) -> int:
        return self.arena.add(np.array(values, np.float32))

    def copy(self, src: int, dst: int, n: int) -> None:
        self.rows.append([OP_COPY, src, dst, n] + [0] * (PROG_WIDTH - 4))

    def emit(self, node: Node, ins: list[int], out_size: int) -> int:
        """Rows for one node reading scratch offsets `ins`; returns its output offset."""
        a, W, Ws = node.attrs, self.arena.weight, self.arena.scale
        out = self.alloc(out_size)
        row = [0] * PROG_WIDTH
        if node.op == "Linear":
            row[:9] = [OP_LINEAR, ins[0], out, a["in_features"], a["out_features"], W(node, "W"),
                       W(node, "bias"), Ws(node, "W"), self.alloc(a["out_features"])]
        elif node.op == "FirstStep":
            return out  # whole-sequence only: run() handles it; graphs with it do not stream
        elif node.op in ("LSTM", "GRU", "RNN"):
            cfg = self.arena.add(recurrent_cfg(node))
            self.cfg_offsets[node.name] = cfg
            H = a["hidden_size"]
            if node.op == "LSTM":
                P = a.get("proj_size", 0)
                st_h = self.state(f"{node.name}.h", P or H, node.weights.get("h0"))
                st_c = self.state(f"{node.name}.c", H, node.weights.get("c0"))
                row[:21] = [OP_LSTM, ins[0], out, a["input_size"], H, P, W(node, "W_ih"),
                            W(node, "W_hh"), W(node, "bias"), W(node, "W_hr"), st_h, st_c,
                            self.alloc(4 * H), self.alloc(H) if P else -1, cfg, W(node, "peephole"),
                            Ws(node, "W_ih"), Ws(node, "W_hh"), Ws(node, "W_hr"), self.alloc(4 * H),
                            int(bool(a.get("output_cell")))]
            elif node.op == "GRU":
                st_h = self.state(f"{node.name}.h", H, node.weights.get("h0"))
                row[:18] = [OP_GRU, ins[0], out, a["input_size"], H,
                            int(a.get("linear_before_reset", True)), W(node, "W_ih"),
                            W(node, "W_hh"), W(node, "b_ih"), W(node, "b_hh"), st_h,
                            self.alloc(3 * H), self.alloc(3 * H), self.alloc(H), cfg,
                            Ws(node, "W_ih"), Ws(node, "W_hh"), self.alloc(3 * H)]
            else:
                st_h = self.state(f"{node.name}.h", H, node.weights.get("h0"))
                row[:14] = [OP_RNN, ins[0], out, a["input_size"], H, 0, W(node, "W_ih"),
                            W(node, "W_hh"), W(node, "bias"), st_h, cfg, Ws(node, "W_ih"),
                            Ws(node, "W_hh"), self.alloc(H)]
        elif node.op == "Activation":
            kind = a["kind"]
            size = a["size"]
            row[:7] = [OP_ACT, ins[0], out, size, ACT_CODES[kind],
                       self.const(a.get("alpha", DEFAULT_ALPHA.get(kind, 0.0)), a.get("beta", 0.0)),
                       a.get("axis_size", size)]
        elif node.op == "LayerNorm":
            row[:8] = [OP_LNORM, ins[0], out, a["size"], self.const(a.get("eps", 1e-5)),
                       W(node, "weight"), W(node, "bias"), a.get("rows", 1)]
        elif node.op == "Concat":
            pos = out
            for src, n in zip(ins, a["sizes"]):
                self.copy(src, pos, n)
                pos += n
            return out
        elif node.op in ("Add", "Mul", "Binary"):
            kind = {"Add": "add", "Mul": "mul"}.get(node.op) or a["kind"]
            row[:6] = [OP_BINARY, ins[0], out, a["size"], ins[1], BINARY_CODES[kind]]
        elif node.op == "Scale":
            row[:6] = [OP_SCALE, ins[0], out, a["size"], W(node, "scale"), W(node, "shift")]
        elif node.op == "Gather":
            row[:5] = [OP_GATHER, ins[0], out, a["out_size"], W(node, "index")]
        elif node.op == "Conv1d":
            row[:14] = [OP_CONV1D, ins[0], out, a["in_channels"], a["in_length"], a["out_channels"],
                        a["kernel_size"], a.get("stride", 1), a.get("dilation", 1),
                        a.get("pad_left", 0), a.get("groups", 1), out_size // a["out_channels"],
                        W(node, "W"), W(node, "bias")]
        elif node.op == "Reduce":
            row[:7] = [OP_REDUCE, ins[0], out, REDUCE_CODES[a["kind"]], a["outer"], a["axis"],
                       a["inner"]]
        else:  # parse_graph admits only known ops
            raise AssertionError(node.op)
        assert len(row) == PROG_WIDTH, node.op
        self.rows.append(row)
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
    out = em.emit(node, ins, out_size)
    init = np.zeros(em.state_size, np.float32)
    for off, arr in em.init_parts:
        init[off:off + arr.size] = arr
    return NodeProgram(em.program(base, total, out, out_size, em.state_size), max(em.scratch, 1), init)


def build_plan(graph: Graph) -> Plan:
    arena = _Arena()
    em = _Emitter(arena)
    slot: dict[str, int] = {}
    (in_name, in_size), = graph.inputs
    slot[in_name] = em.alloc(in_size)
    for node in graph.nodes:
        slot[node.outputs[0]] = em.emit(node, [slot[v] for v in node.inputs],
                                        graph.sizes[node.outputs[0]])
    # Graph outputs are gathered into one contiguous output slot (COPY rows).
    out_total = sum(n for _, n in graph.outputs)
    out_off = em.alloc(out_total)
    output_slices, pos = [], 0
    for (name, n), label in zip(graph.outputs, graph.output_labels):
        em.copy(slot[name], out_off + pos, n)
        output_slices.append((label, pos, pos + n))
        pos += n
    state_size = max(em.state_size, _ALIGN)
    prog = em.program(slot[in_name], in_size, out_off, out_total, state_size)
    node_programs = {n.name: _node_program(n, graph, arena) for n in graph.nodes
                     if n.quantized or (not n.is_recurrent and n.op not in ("Linear", "FirstStep"))}
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
                output_slices, node_programs, cfg)
