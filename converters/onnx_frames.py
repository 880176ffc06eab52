"""Graphs that take one frame per call: the usual export of a streaming model.

Such a graph has no time axis at all. Its data input is one frame (fixed sizes, perhaps a
batch axis), its recurrent layers are fed a length-1 sequence built with Unsqueeze or
Reshape, and their state goes in as graph inputs (initial_h/initial_c) and comes back as
graph outputs (Y_h/Y_c) for the caller to pass into the next call. Each call is one step
of a streaming model, so the converted model's `step()` is one call of the source graph,
with the state kept inside the engine (inputs and outputs are paired automatically, as
for sequence graphs: `onnx_import._pair_states`; `state=[(IN, OUT)]` still overrides).

`onnx_import.convert_graph` tries this form (`FrameAttempt`) when no axis of the data
input can be time and the graph has a recurrent node. The attempt runs the ordinary walk with `Ctx.frame_call` set: the
recurrent converter then takes the size-1 sequence axis as the step
(`onnx_ops/frame_call.py`). Every recurrent state must be paired: a layer that restarts
from a constant state on every call is not a streaming model.

`verify_frames` checks the result against onnxruntime called once per step with the
state outputs of one call fed to the next.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .errors import OnnxConversionError
from .onnx_inputs import graph_dims
from .onnx_verify import _err, _feeds, _session, _state_value, reconstruct
from .onnx_walk import Attempt
from .report import VerifyReport

RECURRENT_OPS = ("LSTM", "GRU", "RNN")

__all__ = ["FrameAttempt", "frame_batch_axes", "try_frame_call", "verify_frames", "is_frame_call"]


def frame_batch_axes(dims: list) -> list:
    """Batch-axis choices for a data input read as one frame: None when every size is
    fixed, the one non-fixed axis (the batch) when there is exactly one, else none."""
    free = [k for k, d in enumerate(dims) if not (isinstance(d, int) and d > 0)]
    if not dims or len(free) > 1:
        return []
    return free or [None]


class FrameAttempt(Attempt):
    """One conversion attempt of a one-frame-per-call graph (no time axis)."""
    frame_call = True

    def __init__(self, model, data_vi, b_axis: int | None, fixed: dict):
        self.model, self.data_vi, self.fixed = model, data_vi, fixed
        self.t_axis, self.b_axis = None, b_axis
        dims = graph_dims(data_vi)
        self.data_dims = dims
        self.names = {dims[b_axis]: "B"} if b_axis is not None and isinstance(dims[b_axis], str) else {}
        self.hints = {"T": 1, "B": None}


def _check_all_state_paired(ctx, meta: dict) -> None:
    paired = {e[0] for st in meta["state"] for e in st["elements"]}
    loose = [f"{r.node}.{r.role}" for r in ctx.state_ranges if f"{r.node}.{r.role}" not in paired]
    if loose:
        raise OnnxConversionError(
            f"the graph has no time axis (one frame per call), but the recurrent state {loose} is "
            "not passed in and out as graph inputs/outputs: every call would restart it, so the "
            "graph is not a streaming model")


def try_frame_call(model, data_vi, fix: dict, state: list, errors: list,
                   finish: Callable) -> tuple | None:
    """(builder, meta, warnings) of the graph read as one frame per call, or None (the
    reasons appended to `errors` as (progress, order, error), like the axis attempts)."""
    from .onnx_sym import AxisError, SymError
    if not any(n.op_type in RECURRENT_OPS for n in model.graph.node):
        return None   # nothing carries state from call to call (e.g. an unrolled export)
    for bax in frame_batch_axes(graph_dims(data_vi)):
        att = FrameAttempt(model, data_vi, bax, fix)
        try:
            att.run()
            b, meta = finish(att, state)
            _check_all_state_paired(att.ctx, meta)
        except (AxisError, OnnxConversionError, SymError) as e:
            ctx = getattr(att, "ctx", None) or getattr(att, "_ctx", None)
            errors.append((ctx.progress if ctx is not None else 0, len(errors), e))
            continue
        meta["time_axis"], meta["batch_axis"] = None, bax
        meta["frame_call"] = True
        return b, meta, att.ctx.warnings
    return None


def is_frame_call(m) -> bool:
    return bool((m.provenance.get("onnx") or {}).get("frame_call"))


# ---- verification ------------------------------------------------------------------------
def _frame_to_ours(frame: np.ndarray, dims: list) -> np.ndarray:
    """One call's data input -> (B, I) in the engine's layout."""
    if "B" in dims:
        frame = np.moveaxis(frame, dims.index("B"), 0)
        return np.ascontiguousarray(frame.reshape(frame.shape[0], -1), np.float32)
    return np.ascontiguousarray(frame.reshape(1, -1), np.float32)


def _frame_from_ours(x: np.ndarray, dims: list) -> np.ndarray:
    """(B, I) -> one call's data input in the ONNX layout."""
    fdims = [int(d) for d in dims if d != "B"]
    if "B" not in dims:
        return x.reshape(fdims)
    arr = x.reshape([x.shape[0]] + fdims)
    return np.moveaxis(arr, 0, dims.index("B"))


def verify_frames(m, model, inputs=None, fix=None, source: str = "onnx", T: int | None = None,
                  B: int | None = None, seed: int = 0, tolerance: float = 1e-4,
                  chunks=(1, 2, 5)) -> VerifyReport:
    """Compare a frame-per-call model with onnxruntime called once per step, the state
    outputs of each call fed back as the next call's state inputs: run() over the whole
    sequence and streamed in chunks, and the final state after streaming."""
    meta = m.provenance["onnx"]
    rep = VerifyReport(source=source, tolerance=tolerance)
    rng = np.random.default_rng(seed)
    dims = next(i for i in meta["inputs"] if i["name"] == meta["data_input"])["dims"]
    T = int(T or 24)
    B = int(B or 2) if "B" in dims else 1
    sess = _session(model)
    onames = [o.name for o in sess.get_outputs()]
    seqs = [rng.standard_normal((B, T, m.input_size)).astype(np.float32)]
    if inputs is not None:
        for x in inputs if isinstance(inputs, (list, tuple)) else [inputs]:
            x = np.asarray(x, np.float32)
            seqs.append(x[None] if x.ndim == 2 else x)
    for Xo in seqs:
        Bx, Tx = Xo.shape[:2]
        if "B" not in dims and Bx != 1:
            raise ValueError(f"the ONNX input {dims} has no batch axis; give (T, I) inputs")
        ones = np.ones(Bx, np.int64)
        feeds = _feeds(meta, model, _frame_from_ours(Xo[:, 0], dims), 1, Bx, ones, fix)
        refs = []
        for t in range(Tx):
            feeds[meta["data_input"]] = _frame_from_ours(Xo[:, t], dims).astype(
                feeds[meta["data_input"]].dtype)
            out = dict(zip(onames, sess.run(None, feeds)))
            refs.append(out)
            for st in meta["state"]:
                feeds[st["input"]] = out[st["output"]].astype(feeds[st["input"]].dtype)
        y = m.run(Xo)
        ys = y if isinstance(y, dict) else {meta["outputs"][0]["name"]: y}
        streamed = []
        states = []
        for b in range(Bx):
            s = m.stream()
            parts, t, k = [], 0, 0
            while t < Tx:
                n = chunks[k % len(chunks)]
                p = s.step_many(Xo[b, t:t + n])
                parts.append(p if isinstance(p, dict) else {meta["outputs"][0]["name"]: p})
                t, k = t + n, k + 1
            streamed.append({kk: np.concatenate([p[kk] for p in parts]) for kk in parts[0]})
            states.append(s.get_state())
        for entry in meta["outputs"]:
            name = entry["name"]
            Ys = np.stack([o[name] for o in streamed])
            for t in range(Tx):
                want = refs[t][name]
                for got, (ab, rl) in ((reconstruct(ys[name][:, t:t + 1], entry, ones),
                                       (rep.run_max_abs, rep.run_max_rel)),
                                      (reconstruct(Ys[:, t:t + 1], entry, ones),
                                       (rep.stream_max_abs, rep.stream_max_rel))):
                    a, r = _err(got.reshape(want.shape) if got.size == want.size else got, want)
                    ab[name] = max(a, ab.get(name, 0.0))
                    rl[name] = max(r, rl.get(name, 0.0))
        for entry in meta["state"]:
            want = refs[-1][entry["output"]]
            got = _state_value(states, entry)
            a, r = _err(got.reshape(want.shape) if got.size == want.size else got, want)
            name = f"{entry['output']} (state)"
            rep.stream_max_abs[name] = max(a, rep.stream_max_abs.get(name, 0.0))
            rep.stream_max_rel[name] = max(r, rep.stream_max_rel.get(name, 0.0))
    rep.notes.append(f"one frame per call: onnxruntime called {T} times with the state outputs "
                     "fed back; compared step by step")
    return rep
