"""Streams and whole sequences on the GPU, numpy in and out.

The program and the weight arena go to the device once per model (kept for the model's
life, shared by its pools and runs); a pool's state lives on the device and comes back
only for get_state(); a step copies X in and Y out through buffers allocated once. Token
ids are checked on the host before a launch (a kernel cannot raise): the CPU's ValueError.
"""
from __future__ import annotations

import numpy as np

from ..inputs import as_float32, flatten_frames, nonfinite_error, pack_inputs, shape_error
from ..ops.embedding import _check as check_sequence_ids
from ..ops.embedding import bad_id_error, input_embeddings
from . import staging
from .device import check_supported, get_cuda
from .staging import segments, shared_stage


def _threads() -> int:
    """Threads per block: 4 warps (an LSTM(., 64)'s 256 gate columns in two passes); the
    simulator runs every thread as a Python thread, so one warp's worth there."""
    from numba.core import config
    return 32 if config.ENABLE_CUDASIM else 128


class _DeviceModel:
    """A model's program and weights on the device: the float32 arena, uploaded once, and
    two views of the same memory: its bytes for the int8 matrices (read at the byte offsets
    the CPU kernels use) and int32 for Gather's indices; the shared-memory staging plan of
    run_kernel and the segments of seq_kernel (staging.py)."""

    def __init__(self, cuda, model):
        plan = model.plan
        self.prog = cuda.to_device(plan.prog)
        self.w = cuda.to_device(plan.arena)
        self.w8 = self.w.view(np.int8)
        self.w32 = self.w.view(np.int32)
        self.S = plan.init_state.size
        self.scratch = plan.scratch_size
        self.no_stage = cuda.to_device(np.full(plan.prog.shape[0], -1, np.int64))
        stage, shoff, self.shared_bytes = shared_stage(plan.prog, staging.SHARED_LIMIT)
        self.stage, self.shoff = cuda.to_device(stage), cuda.to_device(shoff)
        segs, recurrent = segments(model.graph, plan.node_rows, int(plan.prog[0, 0]))
        self.segs, self.recurrent = cuda.to_device(segs), cuda.to_device(recurrent)
        self.embeddings = input_embeddings(model.graph)


def _prepare(model):
    """numba.cuda, the kernels and the model's device copy (made once), or the clear error."""
    cuda = get_cuda()
    check_supported(model.graph)
    from . import kernels
    dev = getattr(model, "_device_model", None)
    if dev is None:
        dev = model._device_model = _DeviceModel(cuda, model)
    return cuda, kernels, dev


class DeviceStreamPool:
    """n independent streams stepped together on the GPU: step(X (n, I)) -> (n, O), one
    kernel launch per step; the same API as lstm_infer.StreamPool."""

    def __init__(self, model, n: int, on_nonfinite: str = "raise"):
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise ValueError(f"number of streams must be a positive integer, got {n!r}")
        self._cuda, self._kernels, self._dev = _prepare(model)
        model._check_streamable()  # a reverse layer: the CPU pool's NotStreamableError
        self.model = model
        self.n = int(n)
        self._check = on_nonfinite == "raise"
        plan = model.plan
        self.input_size = plan.input_size
        self.output_size = plan.output_size
        self._init = np.ascontiguousarray(np.broadcast_to(plan.init_state, (self.n, self._dev.S)))
        cuda = self._cuda
        self._st = cuda.to_device(self._init)
        self._sc = cuda.device_array((self.n, self._dev.scratch), np.float32)
        self._x = cuda.device_array((self.n, self.input_size), np.float32)
        self._y = cuda.device_array((self.n, self.output_size), np.float32)
        self._grid = self._kernels.blocks(self.n)
        self._block = _threads()

    def __len__(self) -> int:
        return self.n

    def step(self, X, out: np.ndarray | None = None):
        """X (n, I) -> (n, O); `out` (float32 (n, O), C-contiguous) avoids the allocation.
        A NaN/Inf input (with on_nonfinite="raise") is refused before anything reaches the
        device, so the state is untouched."""
        X = flatten_frames(as_float32(pack_inputs(X, self.model.graph.inputs, "X"), "X"),
                           self.model._frame)
        if X.shape != (self.n, self.input_size):
            raise shape_error("X", f"({self.n}, {self.input_size})", X.shape)
        if self._check and not np.isfinite(X).all():
            raise nonfinite_error("X")
        check_ids(self.model, X)
        if out is None:
            y = np.empty((self.n, self.output_size), np.float32)
        elif (isinstance(out, np.ndarray) and out.dtype == np.float32
              and out.shape == (self.n, self.output_size) and out.flags.c_contiguous):
            y = out
        else:
            raise ValueError(f"out must be a C-contiguous float32 array of shape ({self.n}, {self.output_size})")
        d = self._dev
        self._x.copy_to_device(np.ascontiguousarray(X))
        self._kernels.step_kernel[self._grid, self._block](d.prog, d.w, d.w8, d.w32, d.no_stage,
                                                           self._st, self._sc, self._x, self._y)
        self._y.copy_to_host(y)
        return y if (out is not None or len(self.model.plan.output_slices) == 1) else self.model._split(y)

    def reset(self, i: int | None = None) -> None:
        """Reset stream i, or all streams when i is None."""
        if i is None:
            self._st.copy_to_device(self._init)
            return
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool) or not -self.n <= i < self.n:
            raise IndexError(f"stream index {i!r} out of range for {self.n} streams")
        i = int(i) % self.n
        self._st[i:i + 1].copy_to_device(self._init[i:i + 1])

    def get_state(self) -> dict[str, np.ndarray]:
        """Copies of every stream's state: name -> (n, size) (copied back from the device)."""
        st = self._st.copy_to_host()
        return {s.name: st[:, s.offset:s.offset + s.size].copy() for s in self.model.plan.state_slots}


def check_ids(model, X: np.ndarray) -> None:
    """The CPU pool's ValueError for an invalid token id in a step's input X (n, I) (the
    Embeddings reading the graph input take its first `count` values), raised before
    anything reaches the device (a kernel cannot raise), so the state is untouched."""
    for node in model._device_model.embeddings:
        ids = X[:, :node.attrs.get("count", 1)]
        if not ((ids >= 0) & (ids < node.attrs["num_embeddings"]) & (ids == np.floor(ids))).all():
            raise bad_id_error(model.graph, X, "X")


def run_on_device(model, xt: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Whole sequences xt (T, B, I) from the initial state -> (T, B, O), in one launch:
    run_kernel when every sequence runs forwards for all T steps, else seq_kernel (padded
    batches, reverse layers; one block per sequence, scratch per step)."""
    cuda, kernels, d = _prepare(model)
    T, B, _ = xt.shape
    for node in d.embeddings:  # the CPU's check and message (ops/embedding.run_sequence)
        check_sequence_ids(xt[..., :node.attrs.get("count", 1)].transpose(1, 0, 2),
                           node.attrs["num_embeddings"], node, "X")
    plan = model.plan
    st = cuda.to_device(np.ascontiguousarray(np.broadcast_to(plan.init_state, (B, d.S))))
    ys = cuda.device_array((T, B, plan.output_size), np.float32)
    xs = cuda.to_device(np.ascontiguousarray(xt))
    threads = _threads()
    if model.graph.streamable and (lens == T).all():
        sc = cuda.device_array((B, d.scratch), np.float32)
        kernels.run_kernel[kernels.blocks(B), threads, 0, d.shared_bytes](
            d.prog, d.w, d.w8, d.w32, d.shoff, d.stage, st, sc, xs, ys)
    else:
        sc3 = cuda.device_array((T, B, d.scratch), np.float32)
        kernels.seq_kernel[B, threads, 0, d.shared_bytes](
            d.prog, d.segs, d.recurrent, cuda.to_device(np.ascontiguousarray(lens, np.int64)),
            d.w, d.w8, d.w32, d.shoff, d.stage, st, sc3, xs, ys)
    return ys.copy_to_host()
