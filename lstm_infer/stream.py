"""Stateful streams. All buffers are allocated here, once; a step allocates nothing
but the returned array (pass `out=` to avoid even that)."""
from __future__ import annotations

import copy

import numpy as np

from .inputs import (ON_NONFINITE, Output, as_float32, flatten_frames, nonfinite_error, pack_inputs,
                     shape_error)
from .kernels.interpreter import step_sequence, step_streams
from .kernels.linalg import aligned
from .ops.causal_attention import limit_error
from .ops.embedding import bad_id_error
from .sequence import chunkable, matrix_bytes, run_graph

# step_many chunks at least this long run node by node (lstm_infer/sequence.py: each input
# projection and Linear as one product over the chunk); shorter ones step the interpreter,
# whose single compiled call wins when the per-node Python calls are not amortised.
# Both give the same floats. Measured crossover (LSTM(16,64), GRU(16,64), LSTM(64,128)):
# level at 64 steps, the node-by-node path 18-30% faster per step from 512.
CHUNK_MIN = 64
# ...but sooner for larger models: the interpreter reads every matrix once per step, where
# the node path reads W_ih and the Linear weights once per chunk (per 4 steps, packed:
# ops/linear.seq_panels), which repays its ~20 us of Python per call sooner. Per step,
# interpreter -> node path (thread time): chunk 16 of LSTM(128,256) (1.6 MB of matrices)
# 26.5 -> 24.8 us, LSTM(256,512) 87.7 -> 72.6, LSTM(80,160) (666 KB) 8.4 -> 7.8,
# GRU(96,192) (737 KB) 9.7 -> 8.2; chunk 32 of LSTM(48,128) (379 KB) 4.5 -> 4.3,
# GRU(64,128) (327 KB) 4.4 -> 3.8, while at 16 these two lose (4.6 -> 5.0, level) and
# LSTM(32,96) (208 KB) loses at 32 (2.80 -> 2.92). (With the arena aligned, which sped up
# the interpreter more, LSTM(64,128) and GRU(64,128) at 32 are level: 4.85 vs 4.80, 3.91
# vs 3.83; at 16 the interpreter wins, 4.84 vs 5.66.)
# (matrix bytes at least, chunk length from which chunks go node by node), largest first:
CHUNK_MIN_BY_SIZE = ((512 << 10, 16), (256 << 10, 32))


def chunk_min(graph) -> int:
    """Shortest step_many chunk that goes node by node for this graph (CHUNK_MIN_BY_SIZE)."""
    size = matrix_bytes(graph)
    return next((n for b, n in CHUNK_MIN_BY_SIZE if size >= b), CHUNK_MIN)


_F32 = np.dtype(np.float32)


class _StepEntry:
    """step_sequence's compiled entry point for step()'s argument types, once compiled.

    Calling it skips the dispatcher's per-call work (typing six arguments, choosing the
    overload): 2.05 -> 1.83 us per LSTM(16,64) step call (measured). Safe because step()
    only calls it with the types of that signature: prog int64 (n, W), weights and memory
    float32, x and y float32 vectors (class, dtype and ndim checked before the call; the
    entry point does not), a bool. The kernel refuses an x or y that is strided or of
    the wrong length (code 4) before reading it: the entry point takes any vector as
    contiguous."""
    fn = None

    @classmethod
    def get(cls, prog, w, mem, x, y, check):
        if cls.fn is None:
            from numba import typeof
            cres = step_sequence.overloads.get(tuple(typeof(a) for a in (prog, w, mem, x, y, check)))
            if cres is None:
                return step_sequence  # not compiled yet: this call compiles it
            cls.fn = cres.entry_point
        return cls.fn


def _bound_step(stream: "Stream"):
    """Stream.step for the common case with everything it reads bound in a closure; set on
    each single-output stream (it shadows the method), so `f = stream.step` gets it too.

    Python's attribute and global look-ups were a sixth of a small model's step: LSTM(1,8)
    1.31 -> 1.15 us, LSTM(16,64) 2.35 -> 2.1 us per call (thread time, A/B in one process).
    Anything but a plain float32 vector (and a plain `out`) goes to the method, which
    converts or refuses it; so does every call until the method has compiled the entry
    point. The method runs on a shallow copy made before the closure is set, which shares
    the stream's arrays: referring to the stream itself from a closure in its own __dict__
    would make a cycle that only the cyclic garbage collector frees (with the memory)."""
    prog, w, mem, check = stream._prog, stream._w, stream._mem, stream._check
    yshape, n_out = stream._yshape, stream.output_size
    ndarray, f32, empty = np.ndarray, _F32, np.empty
    general = Stream.step
    same = copy.copy(stream)  # same arrays; its step is the method
    run = None

    def step(x, out=None):
        nonlocal run
        # x's length and strides are checked by the kernel (return code 4, nothing read):
        # the ndim test is what the entry point needs to unbox x as a vector at all (it
        # checks the item size, not ndim or dtype). 154 -> 94 ns a call without x.shape
        # and x.flags here (GRU(1,8), thread time).
        if run is not None and x.__class__ is ndarray and x.dtype is f32 and x.ndim == 1:
            if out is None:
                y = empty(n_out, f32)
            elif (out.__class__ is ndarray and out.dtype is f32 and out.shape == yshape
                  and out.flags.c_contiguous and out.flags.writeable):
                y = out  # its shape makes the kernel's T = 1
            else:
                return general(same, x, out)
            if run(prog, w, mem, x, y, check):
                return general(same, x, out)  # nothing was computed: the method refuses it
            return y
        y = general(same, x, out)
        run = _StepEntry.fn
        return y

    step.__doc__ = Stream.step.__doc__
    return step


class _StateBox:
    """Memory rows for n streams (state, then scratch) and the kernels' fixed arguments.
    `model` is the lstm_infer.Model that made the stream (its plan and output split)."""

    def __init__(self, model, n: int, on_nonfinite: str):
        if on_nonfinite not in ON_NONFINITE:
            raise ValueError(f"on_nonfinite must be one of {ON_NONFINITE}, got {on_nonfinite!r}")
        plan = model.plan
        self.model = model
        self._prog = plan.prog
        self._w = plan.arena
        self._check = on_nonfinite == "raise"
        self._S = plan.init_state.size
        # on a cache line like the weights (linalg.aligned): the step kernels' scratch vectors
        self._mem = aligned(np.zeros((n, self._S + plan.scratch_size), np.float32))
        self._mem[:, :self._S] = plan.init_state
        self.input_size = plan.input_size
        self.output_size = plan.output_size
        self._single_output = len(plan.output_slices) == 1
        self._xshape = (self.input_size,)
        self._yshape = (self.output_size,)

    def _refused(self, code: int, x: np.ndarray, what: str) -> ValueError:
        """The error for a step kernel's return code (1 NaN/Inf, 2 a bad token id, 3 a full
        causal attention window)."""
        if code == 3:
            return limit_error(self.model.graph, what)
        return nonfinite_error(what) if code == 1 else bad_id_error(self.model.graph, x, what)

    def _expected(self, lead: str) -> str:
        """The accepted input shapes, with leading axes `lead` ("T, "), for an error."""
        flat = f"({lead}{self.input_size}{'' if lead else ','})"
        frame = self.model._frame
        return flat if frame is None else f"({lead}{', '.join(map(str, frame))}) or {flat}"

    def _state_view(self, s, rows=slice(None)):
        return self._mem[rows, s.offset:s.offset + s.size]


class Stream(_StateBox):
    """One stream: `step(x)` for one time step, `step_many(X)` for a chunk."""

    def __init__(self, model, on_nonfinite: str = "raise"):
        super().__init__(model, 1, on_nonfinite)
        # (node, slot, offset, size) of every state slot, when chunks can run node by node
        self._chunk_slots = None
        self._chunk_min = CHUNK_MIN
        if chunkable(model.graph):
            self._chunk_slots = [(*s.name.rsplit(".", 1), s.offset, s.size)
                                 for s in model.plan.state_slots]
            self._chunk_min = chunk_min(model.graph)
        if self._single_output:
            self.step = _bound_step(self)

    def step(self, x, out: np.ndarray | None = None) -> Output:
        """x (I,) -> y (O,). With `out` (float32, C-contiguous, shape (O,)) the result is
        written there and nothing is allocated."""
        # The common case (a C-contiguous float32 vector of the right size) is recognised
        # with identity checks only: the wrapper around the compiled call cost ~0.7 us of a
        # 2.9 us LSTM(16,64) step with the general conversions first (measured).
        if (x.__class__ is not np.ndarray or x.dtype is not _F32 or x.shape != self._xshape
                or not x.flags.c_contiguous):
            x = self._as_step_input(x)
        if out is None:
            y = np.empty(self.output_size, np.float32)
        elif (out.__class__ is np.ndarray and out.dtype is _F32 and out.shape == self._yshape
              and out.flags.c_contiguous and out.flags.writeable):
            y = out
        else:
            raise ValueError(f"out must be a writeable C-contiguous float32 array of shape "
                             f"({self.output_size},)")
        run = _StepEntry.fn or _StepEntry.get(self._prog, self._w, self._mem, x, y, self._check)
        code = run(self._prog, self._w, self._mem, x, y, self._check)  # one step
        if code:
            raise self._refused(code, x, "x")
        return y if (out is not None or self._single_output) else self.model._split(y)

    def _as_step_input(self, x) -> np.ndarray:
        """Any accepted form of one step's input (dict of named inputs, lists, other dtypes)
        as a C-contiguous float32 (I,) vector, or the error saying what was expected."""
        x = flatten_frames(as_float32(pack_inputs(x, self.model.graph.inputs, "x"), "x"),
                           self.model._frame)
        if x.shape != self._xshape:
            raise shape_error("x", self._expected(""), x.shape)
        return np.ascontiguousarray(x)

    def step_many(self, X) -> Output:
        """X (T, I) -> (T, O): exactly T calls of step(), in one compiled call."""
        X = flatten_frames(as_float32(pack_inputs(X, self.model.graph.inputs, "X"), "X"),
                           self.model._frame)
        if X.ndim != 2 or X.shape[1] != self.input_size:
            raise shape_error("X", self._expected("T, "), X.shape)
        if self._chunk_slots is not None and X.shape[0] >= self._chunk_min:
            return self.model._split(self._chunk(X))
        Y = np.empty((X.shape[0], self.output_size), np.float32)
        code = X.shape[0] and step_sequence(self._prog, self._w, self._mem,
                                            np.ascontiguousarray(X).reshape(-1), Y.reshape(-1), self._check)
        if code:
            raise self._refused(code, X, "X")
        return self.model._split(Y)

    def _chunk(self, X: np.ndarray) -> np.ndarray:
        """A chunk node by node (lstm_infer/sequence.py) from this stream's state; the state
        is written back only when the whole chunk is done."""
        if self._check and not np.isfinite(X).all():
            raise nonfinite_error("X")
        row = self._mem[0]
        states: dict = {}
        for node, slot, off, n in self._chunk_slots:
            states.setdefault(node, {})[slot] = row[off:off + n].reshape(1, n).copy()
        T = X.shape[0]
        Y = run_graph(self.model.plan, self.model.graph, np.ascontiguousarray(X)[:, None, :],
                      np.full(1, T, np.int64), states)
        for node, slot, off, n in self._chunk_slots:
            row[off:off + n] = states[node][slot][0]
        return np.ascontiguousarray(Y[:, 0, :])

    def reset(self) -> None:
        """Back to the model's initial state."""
        self._mem[0, :self._S] = self.model.plan.init_state

    def get_state(self) -> dict[str, np.ndarray]:
        """Copies of the recurrent state, named `<node>.h` / `<node>.c`."""
        return {s.name: self._state_view(s, 0).copy() for s in self.model.plan.state_slots}

    def set_state(self, state: dict) -> None:
        """Restore a dict from get_state(); every entry is checked before any is written."""
        slots = {s.name: s for s in self.model.plan.state_slots}
        if not isinstance(state, dict) or set(state) != set(slots):
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"state must be a dict with keys {sorted(slots)}, got {got}")
        checked = {}
        for name, s in slots.items():
            v = as_float32(state[name], f"state[{name!r}]")
            if v.shape != (s.size,):
                raise shape_error(f"state[{name!r}]", f"({s.size},)", v.shape)
            if not np.isfinite(v).all():
                raise ValueError(f"state[{name!r}] contains NaN or Inf")
            checked[name] = v
        for name, s in slots.items():
            self._state_view(s, 0)[...] = checked[name]


class StreamPool(_StateBox):
    """n independent streams stepped together: step(X (n, I)) -> (n, O)."""

    def __init__(self, model, n: int, on_nonfinite: str = "raise"):
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise ValueError(f"number of streams must be a positive integer, got {n!r}")
        super().__init__(model, int(n), on_nonfinite)
        self.n = int(n)

    def __len__(self) -> int:
        return self.n

    def step(self, X, out: np.ndarray | None = None) -> Output:
        """X (n, I) -> (n, O); `out` (float32 (n, O), C-contiguous) avoids the allocation."""
        X = flatten_frames(as_float32(pack_inputs(X, self.model.graph.inputs, "X"), "X"),
                           self.model._frame)
        if X.shape != (self.n, self.input_size):
            raise shape_error("X", self._expected(f"{self.n}, "), X.shape)
        X = np.ascontiguousarray(X)
        if out is None:
            y = np.empty((self.n, self.output_size), np.float32)
        else:
            if not (isinstance(out, np.ndarray) and out.dtype == np.float32
                    and out.shape == (self.n, self.output_size) and out.flags.c_contiguous):
                raise ValueError(f"out must be a C-contiguous float32 array of shape ({self.n}, {self.output_size})")
            y = out
        code = step_streams(self._prog, self._w, self._mem, X, y, self._check)
        if code:
            raise self._refused(code, X, "X")
        return y if (out is not None or self._single_output) else self.model._split(y)

    def reset(self, i: int | None = None) -> None:
        """Reset stream i, or all streams when i is None."""
        if i is None:
            self._mem[:, :self._S] = self.model.plan.init_state
            return
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool) or not -self.n <= i < self.n:
            raise IndexError(f"stream index {i!r} out of range for {self.n} streams")
        self._mem[i, :self._S] = self.model.plan.init_state

    def get_state(self) -> dict[str, np.ndarray]:
        """Copies of every stream's state: name -> (n, size)."""
        return {s.name: self._state_view(s).copy() for s in self.model.plan.state_slots}
