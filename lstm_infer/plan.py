"""Compile a validated Graph into a step program and the arenas the kernels read.

The weights of all nodes are laid out once in one float32 arena (each tensor 64-byte
aligned); node weights are re-pointed at views of it, so the step kernel and the
sequence path read the same memory. Activations get slots in a per-stream scratch
row, recurrent state gets slots in a per-stream state row.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ModelFormatError
from .graph import DEFAULT_ALPHA, Graph
from .kernels.cells import ACT_CODES
from .kernels.program import (OP_ACT, OP_ADD, OP_COPY, OP_GRU, OP_LINEAR, OP_LNORM, OP_LSTM,
                              OP_MUL, OP_RNN, PROG_WIDTH)

_ALIGN = 16  # floats: 64 bytes
_MAX_SCRATCH_FLOATS = 1 << 28  # 1 GiB per stream: a graph needing more is not a real model


@dataclass
class StateSlot:
    name: str      # "<node>.h" or "<node>.c"
    offset: int
    size: int


@dataclass
class Plan:
    prog: np.ndarray          # (n_ops + 1, PROG_WIDTH) int64, or None if not streamable
    arena: np.ndarray         # float32 weights + constants
    init_state: np.ndarray    # (S,) float32
    state_slots: list[StateSlot]
    scratch_size: int
    input_size: int
    output_size: int
    output_slices: list[tuple[str, int, int]]  # (name, start, stop) inside the output vector


class _Arena:
    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []
        self.size = 0

    def add(self, arr: np.ndarray) -> int:
        off = self.size
        flat = np.ascontiguousarray(arr, dtype=np.float32).ravel()
        pad = (-flat.size) % _ALIGN
        self.parts.append(flat)
        if pad:
            self.parts.append(np.zeros(pad, np.float32))
        self.size += flat.size + pad
        return off

    def build(self) -> np.ndarray:
        a = np.concatenate(self.parts) if self.parts else np.zeros(_ALIGN, np.float32)
        return a


def build_plan(graph: Graph) -> Plan:
    arena = _Arena()
    offsets: dict[int, int] = {}  # id(weight array) -> arena offset

    def woff(node, role) -> int:
        arr = node.weights.get(role)
        if arr is None:
            return -1
        key = id(arr)
        if key not in offsets:
            offsets[key] = arena.add(arr)
        return offsets[key]

    def const(v: float) -> int:
        return arena.add(np.array([v], np.float32))

    scratch = 0
    slot: dict[str, int] = {}

    def alloc(n: int) -> int:
        nonlocal scratch
        off = scratch
        scratch += n + (-n) % _ALIGN
        return off

    (in_name, in_size), = graph.inputs
    slot[in_name] = alloc(in_size)
    state_slots: list[StateSlot] = []
    state_size = 0
    init_parts: list[tuple[int, np.ndarray]] = []

    def state(name: str, size: int, init: np.ndarray | None) -> int:
        nonlocal state_size
        off = state_size
        state_slots.append(StateSlot(name, off, size))
        state_size += size + (-size) % _ALIGN
        if init is not None:
            init_parts.append((off, init))
        return off

    rows: list[list[int]] = []
    for node in graph.nodes:
        a = node.attrs
        ins = [slot[v] for v in node.inputs]
        out_size = graph.sizes[node.outputs[0]]
        out = alloc(out_size)
        slot[node.outputs[0]] = out
        row = [0] * PROG_WIDTH
        if node.op == "Linear":
            row[:7] = [OP_LINEAR, ins[0], out, a["in_features"], a["out_features"],
                       woff(node, "W"), woff(node, "bias")]
        elif node.op == "LSTM":
            H, P = a["hidden_size"], a.get("proj_size", 0)
            st_h = state(f"{node.name}.h", P or H, node.weights.get("h0"))
            st_c = state(f"{node.name}.c", H, node.weights.get("c0"))
            row[:14] = [OP_LSTM, ins[0], out, a["input_size"], H, P, woff(node, "W_ih"),
                        woff(node, "W_hh"), woff(node, "bias"), woff(node, "W_hr"), st_h, st_c,
                        alloc(4 * H), alloc(H) if P else -1]
        elif node.op == "GRU":
            H = a["hidden_size"]
            st_h = state(f"{node.name}.h", H, node.weights.get("h0"))
            row[:14] = [OP_GRU, ins[0], out, a["input_size"], H,
                        int(a.get("linear_before_reset", True)), woff(node, "W_ih"),
                        woff(node, "W_hh"), woff(node, "b_ih"), woff(node, "b_hh"), st_h,
                        alloc(3 * H), alloc(3 * H), alloc(H)]
        elif node.op == "RNN":
            H = a["hidden_size"]
            st_h = state(f"{node.name}.h", H, node.weights.get("h0"))
            row[:10] = [OP_RNN, ins[0], out, a["input_size"], H,
                        int(a.get("nonlinearity", "tanh") == "relu"), woff(node, "W_ih"),
                        woff(node, "W_hh"), woff(node, "bias"), st_h]
        elif node.op == "Activation":
            kind = a["kind"]
            row[:6] = [OP_ACT, ins[0], out, a["size"], ACT_CODES[kind],
                       const(a.get("alpha", DEFAULT_ALPHA.get(kind, 0.0)))]
        elif node.op == "LayerNorm":
            row[:7] = [OP_LNORM, ins[0], out, a["size"], const(a.get("eps", 1e-5)),
                       woff(node, "weight"), woff(node, "bias")]
        elif node.op == "Concat":
            pos = out
            for src, n in zip(ins, a["sizes"]):
                rows.append([OP_COPY, src, pos, n] + [0] * (PROG_WIDTH - 4))
                pos += n
            continue
        elif node.op in ("Add", "Mul"):
            row[:5] = [OP_ADD if node.op == "Add" else OP_MUL, ins[0], out, a["size"], ins[1]]
        else:  # parse_graph admits only known ops
            raise AssertionError(node.op)
        rows.append(row)

    # Graph outputs are gathered into one contiguous output slot (COPY rows).
    out_total = sum(n for _, n in graph.outputs)
    out_off = alloc(out_total)
    output_slices = []
    pos = 0
    for name, n in graph.outputs:
        rows.append([OP_COPY, slot[name], out_off + pos, n] + [0] * (PROG_WIDTH - 4))
        output_slices.append((name, pos, pos + n))
        pos += n

    if scratch > _MAX_SCRATCH_FLOATS:
        raise ModelFormatError(f"model needs {scratch:,} floats of activation scratch per stream "
                               f"(limit {_MAX_SCRATCH_FLOATS:,}); the file is corrupt or hostile")
    header = [len(rows), slot[in_name], in_size, out_off, out_total] + [0] * (PROG_WIDTH - 5)
    prog = np.array([header] + rows, dtype=np.int64)
    w = arena.build()
    # Re-point node weights at the arena so the sequence path reads the same floats.
    for node in graph.nodes:
        for role, arr in list(node.weights.items()):
            off = offsets.get(id(arr))
            if off is not None:
                node.weights[role] = w[off:off + arr.size].reshape(arr.shape)
    init = np.zeros(max(state_size, 1), np.float32)
    for off, arr in init_parts:
        init[off:off + arr.size] = arr
    return Plan(prog, w, init, state_slots, max(scratch, 1), in_size, out_total, output_slices)
