"""The inputs of an ONNX graph: loading the model, which graph input is the data sequence,
which of its axes may be time and batch (tried in order by `onnx_import.convert_graph`),
and values bound with `fix` (--fix)."""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from .errors import ConversionError
from .onnx_roles import SUPPORTED_INPUTS, describe_inputs, input_roles

__all__ = ["load_onnx", "opset_of", "graph_dims", "elem_dtype", "parse_fix_value", "graph_inputs",
           "choose_data_input", "axis_candidates", "TIME_WORDS", "BATCH_WORDS"]

TIME_WORDS = ("time", "seq", "len", "step", "frame")
BATCH_WORDS = ("batch", "n", "b", "bs", "batch_size")


def load_onnx(src: Any) -> Any:
    import onnx
    if isinstance(src, onnx.ModelProto):
        return src
    if isinstance(src, (bytes, bytearray)):
        return onnx.load_from_string(bytes(src))
    return onnx.load(os.fspath(src))


def opset_of(model) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 1


def graph_dims(vi) -> list:
    """A value_info's dims: int, a dim_param name (str), or None when unknown."""
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return []
    out = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


def elem_dtype(vi) -> np.dtype:
    from onnx import helper
    return np.dtype(helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type))


def parse_fix_value(v) -> np.ndarray:
    """--fix values: a number, a JSON list, a .npy file, or an array."""
    if isinstance(v, str):
        s = v.strip()
        if s.endswith(".npy") and os.path.isfile(s):
            return np.load(s, allow_pickle=False)
        try:
            return np.asarray(json.loads(s))
        except ValueError:
            raise ConversionError(f"cannot read --fix value {v!r} (a number, a JSON list or a .npy file)") \
                from None
    return np.asarray(v)


def graph_inputs(model) -> list:
    inits = {t.name for t in model.graph.initializer}
    return [vi for vi in model.graph.input if vi.name not in inits]


def _state_like_inputs(model) -> set[str]:
    """Inputs that reach a recurrent node's sequence_lens/initial_h/initial_c (input 4-7)
    through shape-only ops: they are not the data input."""
    shape_ops = {"Slice", "Gather", "Squeeze", "Unsqueeze", "Reshape", "Split", "Identity",
                 "Transpose", "Cast", "Concat", "Expand", "Flatten"}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i, x in enumerate(n.input):
            consumers.setdefault(x, []).append((n, i))
    out = set()
    for vi in graph_inputs(model):
        stack, seen = [vi.name], set()
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            for n, i in consumers.get(v, []):
                if n.op_type in ("LSTM", "GRU", "RNN") and i >= 4:
                    out.add(vi.name)
                elif n.op_type in shape_ops and i == 0 or n.op_type == "Concat":
                    stack.extend(o for o in n.output if o)
    return out


def choose_data_input(model, fixed: dict, state_pairs: list) -> Any:
    """The graph input that is the sequence: float features or integer token ids (an
    embedding's indices); lengths and unused inputs never are (onnx_roles)."""
    named_state = {a for a, _ in state_pairs}
    roles = input_roles(model)
    cands = [vi for vi in graph_inputs(model) if vi.name not in fixed and vi.name not in named_state
             and roles[vi.name].kind != "lengths"]
    cands = [vi for vi in cands if roles[vi.name].kind != "unused"] or cands
    floats = [vi for vi in cands if elem_dtype(vi).kind == "f" or roles[vi.name].kind == "tokens"]
    if len(floats) > 1:
        sl = _state_like_inputs(model)
        floats = [vi for vi in floats if vi.name not in sl] or floats
    if len(floats) > 1:
        timed = [vi for vi in floats if any(isinstance(d, str) and any(w in d.lower() for w in TIME_WORDS)
                                            for d in graph_dims(vi))]
        # else the first one (exporters put the sequence first); the others, if used as
        # data, get an error that names them and suggests --fix / --state
        floats = timed if len(timed) == 1 else floats[:1]
    if len(floats) != 1:
        raise ConversionError(
            "cannot tell which graph input is the data sequence; the graph inputs are:\n"
            f"{describe_inputs(roles, fixed, named_state)}\n{SUPPORTED_INPUTS}")
    return floats[0]


def axis_candidates(dims: list) -> list[tuple[int, int | None]]:
    r = len(dims)
    if r < 1:
        raise ConversionError("the data input has no shape (rank 0 or unknown)")
    names = [d.lower() if isinstance(d, str) else "" for d in dims]
    def is_batch(k):
        return names[k] in BATCH_WORDS or "batch" in names[k]

    def is_time(k):
        return any(w in names[k] for w in TIME_WORDS) and not is_batch(k)
    # a dimension the file names as batch is never time, and the other way round
    pairs = [(t, b) for t in range(r) for b in [None] + [k for k in range(r) if k != t]
             if not is_batch(t) and not (b is not None and is_time(b))]
    # a feature axis must have a fixed size
    pairs = [(t, b) for t, b in pairs
             if all(isinstance(dims[k], int) and dims[k] > 0 for k in range(r) if k not in (t, b))]

    def score(p):
        t, b = p
        s = 0
        if any(w in names[t] for w in TIME_WORDS):
            s -= 8
        if b is not None and (names[b] in BATCH_WORDS or "batch" in names[b]):
            s -= 8
        sym = [k for k in range(r) if not isinstance(dims[k], int)]
        s -= 2 * sum(k in sym for k in (t, b) if k is not None)
        default = [(0, 1), (1, 0), (0, None), (1, None)]
        s += default.index(p) * 0.1 if p in default else 1
        if r == 2 and b is None:
            s -= 0.5
        return s
    return sorted(pairs, key=score)
