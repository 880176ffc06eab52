"""Conversion state for one ONNX graph: values, the GraphBuilder, and the helpers every op
converter uses (materialising a per-step tensor, constants as IR values, read-out codes,
recurrent state bookkeeping).

Every ONNX value is either a numpy array (a constant, possibly holding symbolic `Dim`s)
or an `OnnxValue`: `data` is a `Dyn` of kind "data" (an IR value) or "const" (a constant with
symbolic broadcast axes); `ids` is a `Dyn` of kind "ids" tracing recurrent state (element
ids of a state graph input, or of a recurrent layer's final state) through data movement
so that an input `h0` and an output `hn` can be paired.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from lstm_infer.builder import GraphBuilder

from .errors import AxisError, OnnxConversionError
from .onnx_sym import Dyn, align_idx, broadcast_axes


@dataclass
class OnnxValue:
    """A non-constant ONNX tensor: per-step data, traced state ids, or both (the torch
    importer's counterpart is `TorchValue`)."""
    data: Dyn | None = None
    ids: Dyn | None = None
    why: str = ""          # why there is no data (shown when data is needed)
    input_name: str | None = None  # a non-data graph input, untouched
    err: Exception | None = None   # the error that removed the data, raised where it is needed
    # a Pad of zeros in front of the time axis: (the unpadded Dyn, its time axis, frames);
    # only a following Conv over time may absorb it, as causal padding (onnx_ops/conv2d.py)
    causal_pad: tuple | None = None
    # softmax weights over time (and times a sequence) awaiting the ReduceSum that makes
    # them attention pooling (onnx_ops/attention_pool.py)
    pending: tuple | None = None

    def need(self) -> Dyn:
        if self.data is None and self.err is not None:
            raise self.err
        if self.data is None:
            raise OnnxConversionError(self.why or "value is not available as data")
        return self.data


READ_ANY, READ_LAST, READ_LEN, READ_FIRST = 0, 1, 2, 3


@dataclass
class StateIdRange:
    """The state ids [base, base + size) given to one recurrent node's h or c, so that a
    traced graph input and output can be named `<node>.<role>` when they are paired (not
    the runtime's `lstm_infer.plan.StateSlot`, which places state in buffers)."""
    node: str
    role: str     # "h" or "c"
    size: int
    base: int     # first state id


@dataclass
class Ctx:
    """Everything the op converters share during one conversion attempt."""
    builder: GraphBuilder
    input_name: str
    opset: int
    producer: str = ""
    warnings: list[str] = field(default_factory=list)
    values: dict = field(default_factory=dict)
    lengths_input: str | None = None       # graph input used as sequence_lens
    extra_data_inputs: list[str] = field(default_factory=list)  # more per-step inputs, in order
    int_input: bool = False                # the data input holds integer token ids
    lengths_nodes: list[str] = field(default_factory=list)
    recurrent_nodes: list[str] = field(default_factory=list)
    init_map: dict[int, int] = field(default_factory=dict)   # input element id -> state id
    state_ranges: list[StateIdRange] = field(default_factory=list)
    n_state_ids: int = 0
    progress: int = 0                      # nodes converted so far (to rank failed attempts)
    input_ids: dict[str, tuple[int, tuple]] = field(default_factory=dict)  # name -> (base, shape)
    used: set = field(default_factory=set)  # tensor names read by a node or a graph output
    frame_call: bool = False  # no time axis in the graph: each call is one step (onnx_frames)
    # Converts a nested graph (an If branch) in this context. The importer passes its own
    # graph walker here so that op converters never import the importer back.
    subgraph_walker: Callable[[Ctx, Any], list] | None = None
    _gathers: dict = field(default_factory=dict)
    _consts: dict = field(default_factory=dict)

    def walk_subgraph(self, graph) -> list:
        """The values of `graph`'s outputs, its nodes converted like the main graph's."""
        if self.subgraph_walker is None:
            raise OnnxConversionError("nested graphs (If branches) need a graph walker")
        return self.subgraph_walker(self, graph)

    # ---- IR emission ---------------------------------------------------------------
    def size(self, value: str) -> int:
        return self.builder.sizes[value]

    def emit(self, op: str, name: str, inputs: list[str], attrs: dict, weights: dict | None = None) -> str:
        return self.builder.add(op, clean_name(name), inputs, attrs, weights)

    def mat(self, d: Dyn, axes: list | None = None, fshape: tuple | None = None) -> Dyn:
        """`d` (broadcast to `fshape`) with its elements contiguous in row-major order."""
        idx = d.idx if fshape is None else align_idx(d, axes, fshape)
        axes = d.axes if axes is None else axes
        flat = np.ascontiguousarray(idx).reshape(-1)
        ar = np.arange(flat.size, dtype=np.int64).reshape(idx.shape)
        if d.kind == "const":
            data = np.where(flat >= 0, d.ref[np.maximum(flat, 0)], 0).astype(d.ref.dtype)
            return Dyn("const", data, ar, list(axes))
        if d.kind != "data":
            raise OnnxConversionError("graph input used as data (see the input's message)")
        n = self.size(d.ref)
        readout = None if d.readout is None else np.where(flat >= 0, d.readout[np.maximum(flat, 0)], 0)
        if flat.size == n and np.array_equal(flat, np.arange(n)):
            return Dyn("data", d.ref, ar, list(axes), readout)
        key = (d.ref, flat.tobytes())
        if key not in self._gathers:
            self._gathers[key] = self.emit("Gather", "gather", [d.ref],
                                           {"in_size": n, "out_size": int(flat.size)},
                                           {"index": flat.astype(np.float32)})
        return Dyn("data", self._gathers[key], ar, list(axes), readout)

    def const_value(self, vec: np.ndarray) -> str:
        """An IR value holding a constant vector (zeros gathered from the input, plus a shift)."""
        vec = np.asarray(vec, np.float32).reshape(-1)
        key = vec.tobytes()
        if key not in self._consts:
            n_in = self.size(self.input_name)
            z = self.emit("Gather", "const", [self.input_name], {"in_size": n_in, "out_size": int(vec.size)},
                          {"index": np.full(vec.size, -1, np.float32)})
            if np.any(vec != 0):
                z = self.emit("Scale", "const", [z], {"size": int(vec.size)}, {"shift": vec})
            self._consts[key] = z
        return self._consts[key]

    def as_data(self, d: Dyn, axes=None, fshape=None) -> Dyn:
        """Materialise as an IR value even when `d` is a constant."""
        m = self.mat(d, axes, fshape)
        if m.kind == "const":
            v = self.const_value(m.ref.astype(np.float32))
            return Dyn("data", v, m.idx, m.axes, np.zeros(m.idx.size, np.int64))
        return m

    # ---- read-out codes ----------------------------------------------------------------
    def combine_codes(self, codes: np.ndarray, what: str) -> int:
        s = set(np.unique(codes).tolist()) - {READ_ANY}
        if not s:
            return READ_ANY
        if READ_FIRST in s and len(s) > 1:
            raise AxisError(f"{what} combines the final state of a reverse-direction layer (reached "
                            "at time step 0) with values of the last step; the runtime has no op "
                            "to hold a step-0 value over time")
        if len(s) > 1:
            raise AxisError(f"{what} mixes values read at the last step and at each sequence's "
                            "length (sequence_lens)")
        return s.pop()

    def mixed_readout(self, d: Dyn, n_out: int, what: str) -> np.ndarray | None:
        """Read-out of an op whose every output element depends on all elements of `d`."""
        if d.readout is None:
            return None
        flat = d.idx.reshape(-1)
        codes = d.readout[flat[flat >= 0]] if d.kind == "data" else np.zeros(0, np.int64)
        return np.full(n_out, self.combine_codes(codes, what), np.int64)

    def pair_readout(self, a: np.ndarray | None, b: np.ndarray | None, what: str):
        """Element-wise combination of two aligned read-outs (None: has a time axis)."""
        if a is None and b is None:
            return None
        if a is None or b is None:
            other = b if a is None else a
            if np.any(other != READ_ANY):
                raise AxisError(f"{what} combines per-step values with a final-state value (the "
                                "result would depend on future time steps)")
            return None
        out = np.where(a == READ_ANY, b, a)
        bad = (a != READ_ANY) & (b != READ_ANY) & (a != b)
        if bad.any():
            raise AxisError(f"{what} combines final states read at different time steps (a "
                            "reverse-direction layer's final state is reached at step 0)")
        return out

    # ---- recurrent state -------------------------------------------------------------
    def new_state(self, node: str, role: str, size: int) -> np.ndarray:
        base = self.n_state_ids
        self.state_ranges.append(StateIdRange(node, role, size, base))
        self.n_state_ids += size
        return np.arange(base, base + size, dtype=np.int64)

    def state_name(self, sid: int) -> tuple[str, int]:
        for s in self.state_ranges:
            if s.base <= sid < s.base + s.size:
                return f"{s.node}.{s.role}", sid - s.base
        raise KeyError(sid)


def clean_name(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.\-]+", "_", name).strip("_.") or "node"
    return s[:120]


def broadcast_pair(a: Dyn, b: Dyn):
    return broadcast_axes(a.axes, a.fshape, b.axes, b.fshape)
