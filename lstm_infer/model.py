"""Model: a loaded file, its compiled plan, whole-sequence run() and stream factories."""
from __future__ import annotations

import os
import numpy as np

from ._firstuse import compile_notice
from .cuda.device import check_device, check_supported
from .errors import NotStreamableError
from .fileformat import read_model
from .graph import Graph, parse_graph
from .inputs import ON_NONFINITE, Output, as_float32, flatten_frames, pack_inputs, shape_error
from .plan import Plan, build_plan
from .sequence import run_graph
from .stream import Stream, StreamPool
from .summary import format_summary


_DT_NAMES = {"float32": "fp32", "float16": "fp16", "int8": "int8"}


def _role_key(doc: dict, tensor: str) -> str:
    """`<node>.<role>` for a tensor name (converters name tensors that way already)."""
    for nd in doc.get("nodes", []):
        for role, t in nd.get("weights", {}).items():
            if t == tensor:
                return f"{nd['name']}.{role}"
    return tensor


def load(path: str | os.PathLike, verify_checksum: bool = True, warmup: bool = True) -> "Model":
    """Validate and load a `.lstm` file. Raises ModelFormatError for any defect of the file.

    `warmup` runs the model once on zeros so that loading the compiled kernels from the
    Numba cache (about 0.1-0.2 s in a fresh process, seconds if they must be compiled)
    happens here, at start-up, and not on the first real sample.
    """
    raw = read_model(path, verify_checksum=verify_checksum)
    graph = parse_graph(raw.graph, raw.tensors)
    model = Model(graph, provenance=raw.provenance, path=raw.path, file_size=raw.file_size,
                  tensor_dtypes=sorted({str(t.dtype) for t in raw.tensors.values()}))
    model._stored = {_role_key(raw.graph, name): _DT_NAMES.get(str(t.dtype), str(t.dtype))
                     for name, t in raw.tensors.items()}
    if warmup:
        model.warmup()
    return model


class Model:
    """A loaded model. `run()` is stateless; `stream()`/`streams(n)` keep state."""

    def __init__(self, graph: Graph, provenance: dict | None = None, path: str | None = None,
                 file_size: int | None = None, tensor_dtypes: list[str] | None = None):
        self.graph = graph
        self.provenance = provenance or {}
        self.path = path
        self.file_size = file_size
        kinds = set(tensor_dtypes or ["float32"])
        self.dtype = "int8" if "int8" in kinds else "fp16" if "float16" in kinds else "fp32"
        self.plan: Plan = build_plan(graph)
        self._stored: dict[str, str] = {}

    # ---- description -------------------------------------------------------------
    @property
    def input_size(self) -> int:
        return self.plan.input_size

    @property
    def output_size(self) -> int:
        return self.plan.output_size

    @property
    def input_shape(self) -> tuple:
        """Shape of one time step's input: a frame's shape when the file records one (e.g.
        (64, 64, 1) for ConvLSTM2D), else (input_size,); for a model with a prelude, of one
        image (channels, height, None): its width is free and becomes the time axis."""
        if self.graph.prelude is not None:
            return self.graph.prelude.image_shape
        return self._frame or (self.input_size,)

    @property
    def output_shape(self) -> tuple:
        """Shape of one time step's output: a frame's shape when the file records one (a
        ConvLSTM's (Ho, Wo, filters)), else (output_size,). Outputs are returned flat."""
        outs = self.graph.outputs
        if len(outs) == 1 and outs[0][0] in self.graph.shapes:
            return self.graph.shapes[outs[0][0]]
        return (self.output_size,)

    @property
    def _frame(self) -> tuple | None:
        """The recorded per-step input shape of a one-input model, if any."""
        ins = self.graph.inputs
        return self.graph.shapes.get(ins[0][0]) if len(ins) == 1 else None

    @property
    def input_names(self) -> list[str]:
        """Names of the per-step inputs; a model with several takes a dict name -> array
        (or the inputs concatenated in this order)."""
        return [name for name, _ in self.graph.inputs]

    @property
    def output_names(self) -> list[str]:
        """Names of the outputs (the source model's names), the keys of a multi-output result."""
        return [label for label, _, _ in self.plan.output_slices]

    @property
    def streamable(self) -> bool:
        return self.graph.streamable

    def compression_ratio(self) -> float:
        """fp32 bytes of all weights / their stored bytes (int8 scales included)."""
        itemsize = {"fp32": 4, "fp16": 2, "int8": 1}
        stored = fp32 = 0
        for n in self.graph.nodes:
            for r, w in n.weights.items():
                kind = self._stored.get(f"{n.name}.{r}", "fp32")
                stored += w.size * itemsize.get(kind, 4)
                if not r.endswith(".scale"):
                    fp32 += w.size * 4
        return fp32 / stored if stored else 1.0

    def weight_dtypes(self) -> dict[str, str]:
        """Stored dtype of every weight matrix: `<node>.<role>` -> fp32 / fp16 / int8."""
        return {f"{n.name}.{r}": self._stored.get(f"{n.name}.{r}", "fp32")
                for n in self.graph.nodes for r in n.weights if not r.endswith(".scale")}

    def summary(self) -> str:
        """Layers, sizes, parameters, dtype, bytes, whether it streams, provenance."""
        return format_summary(self)

    def __repr__(self) -> str:
        return self.summary()

    def warmup(self) -> None:
        """Load (or compile) every kernel this model uses by running it once on zeros.
        On a cold kernel cache it says so on stderr, once (lstm_infer/_firstuse.py)."""
        with compile_notice() as notice:
            if self.graph.prelude is not None:
                pre = self.graph.prelude
                self.run(np.zeros((pre.channels, pre.height, pre.min_width), np.float32))
                notice.stage("run")
                return
            x = np.zeros((2, self.input_size), np.float32)
            self.run(x)
            notice.stage("run")
            if self.streamable:
                s = self.stream()
                s.step(x[0])
                notice.stage("step")
                s.step_many(x)
                notice.stage("step_many")
                self.streams(1).step(x[:1])
                notice.stage("streams")

    # ---- outputs -----------------------------------------------------------------
    def _split(self, y: np.ndarray) -> Output:
        if len(self.plan.output_slices) == 1:
            return y
        return {name: y[..., a:b] for name, a, b in self.plan.output_slices}

    # ---- whole sequences -----------------------------------------------------------
    def run(self, X, lengths=None, on_nonfinite: str = "raise", device: str = "cpu") -> Output:
        """Stateless inference: X (T, I) -> (T, O), or (B, T, I) -> (B, T, O). A model with
        several inputs takes a dict name -> (T, I_k) / (B, T, I_k) arrays. A model with a
        prelude takes images: (B, C, H, W) -> (B, T, O), or (C, H, W) -> (T, O).

        `lengths` (B,) gives per-sequence lengths (ONNX sequence_lens): recurrent layers stop
        at lengths[b] and output zeros after it; reverse layers start at lengths[b] - 1.

        `device="cuda"` runs the batch on a GPU (lstm_infer/cuda/, numpy in and out).
        """
        on_device = check_device(device)
        if on_nonfinite not in ON_NONFINITE:
            raise ValueError(f"on_nonfinite must be one of {ON_NONFINITE}, got {on_nonfinite!r}")
        if on_device:  # an unsupported model is refused before its input is looked at
            check_supported(self.graph)
        if self.graph.prelude is not None:
            return self._run_images(X, lengths, on_nonfinite)
        X = flatten_frames(as_float32(pack_inputs(X, self.graph.inputs, "X"), "X"), self._frame)
        I = self.input_size
        if X.ndim not in (2, 3) or X.shape[-1] != I:
            want = f"(T, {I}) or (B, T, {I})"
            if self._frame is not None:
                dims = ", ".join(map(str, self._frame))
                want = f"(T, {dims}) or (B, T, {dims}), or flattened {want}"
            raise shape_error("X", want, X.shape)
        if X.shape[-2] == 0 or X.size == 0:
            raise ValueError(f"X has shape {X.shape}: an empty sequence, nothing to run")
        if on_nonfinite == "raise" and not np.isfinite(X).all():
            raise ValueError("X contains NaN or Inf (pass on_nonfinite='propagate' to allow it)")
        batched = X.ndim == 3
        lens = _check_lengths(lengths, X.shape[0] if batched else 1, X.shape[-2])
        xt = np.ascontiguousarray(X.transpose(1, 0, 2) if batched else X[:, None, :])
        if on_device:
            from .cuda.pool import run_on_device
            y = run_on_device(self, xt, lens)
            return self._split(np.ascontiguousarray(y.transpose(1, 0, 2) if batched else y[:, 0, :]))
        return self._run_sequence(xt, lens, batched)

    def _run_images(self, X, lengths, on_nonfinite: str) -> Output:
        """The prelude on whole images, then the per-step graph on its (T, B, F) output."""
        pre = self.graph.prelude
        X = as_float32(X, "X")
        C, H = pre.channels, pre.height
        if X.ndim not in (3, 4) or X.shape[-3:-1] != (C, H):
            raise shape_error("X", f"images (B, {C}, {H}, W) or one image ({C}, {H}, W)", X.shape)
        if X.size == 0:
            raise ValueError(f"X has shape {X.shape}: no image to run")
        if lengths is not None:
            raise ValueError("lengths is not supported for a model that takes images (its "
                             "sequence length comes from the image width)")
        if on_nonfinite == "raise" and not np.isfinite(X).all():
            raise ValueError("X contains NaN or Inf (pass on_nonfinite='propagate' to allow it)")
        batched = X.ndim == 4
        xt = pre.run(np.ascontiguousarray(X if batched else X[None]))
        return self._run_sequence(xt, np.full(xt.shape[1], xt.shape[0], np.int64), batched)

    def _run_sequence(self, xt: np.ndarray, lens: np.ndarray, batched: bool) -> Output:
        """The per-step graph over a (T, B, I) sequence, node by node (lstm_infer/sequence.py)."""
        y = run_graph(self.plan, self.graph, xt, lens)
        y = y.transpose(1, 0, 2) if batched else y[:, 0, :]
        return self._split(np.ascontiguousarray(y))

    # ---- streaming -----------------------------------------------------------------
    def _check_streamable(self) -> None:
        if self.graph.prelude is not None:
            raise NotStreamableError(
                "this model cannot stream one step at a time: it starts with a prelude of "
                "whole-image ops (2-D convolutions and pools over the image, padded along its "
                "width) whose output width becomes the time axis, so every time step depends on "
                "the whole image; use run() on whole images")
        if not self.streamable:
            raise NotStreamableError(
                "this model cannot stream one step at a time: "
                f"{', '.join(self.graph.reverse_nodes)} need the whole sequence (a layer that runs "
                "backwards in time, as in a bidirectional model, or an op that reads another "
                "time step), so each output depends on future inputs; use run() on whole sequences")

    def stream(self, on_nonfinite: str = "raise") -> Stream:
        """One stateful stream: step(x) carries the recurrent state to the next call."""
        self._check_streamable()
        return Stream(self, on_nonfinite)

    def streams(self, n: int, on_nonfinite: str = "raise", device: str = "cpu") -> StreamPool:
        """n independent streams stepped together: step(X (n, I)) -> (n, O). With
        `device="cuda"` the pool lives on a GPU (lstm_infer/cuda/pool.py, the same API)."""
        if check_device(device):
            if on_nonfinite not in ON_NONFINITE:
                raise ValueError(f"on_nonfinite must be one of {ON_NONFINITE}, got {on_nonfinite!r}")
            from .cuda.pool import DeviceStreamPool
            return DeviceStreamPool(self, n, on_nonfinite)
        self._check_streamable()
        return StreamPool(self, n, on_nonfinite)


def _check_lengths(lengths, B: int, T: int) -> np.ndarray:
    if lengths is None:
        return np.full(B, T, np.int64)
    arr = np.asarray(lengths)
    if arr.dtype.kind not in "iu" or arr.shape != (B,):
        raise ValueError(f"lengths must be {B} integers (one per sequence), got shape {arr.shape} "
                         f"dtype {arr.dtype}")
    if (arr < 0).any() or (arr > T).any():
        raise ValueError(f"lengths must lie in [0, {T}], got {arr.tolist()}")
    return arr.astype(np.int64)
