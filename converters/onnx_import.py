"""ONNX -> `.lstm`: `convert_onnx`, `verify_onnx`, `SUPPORTED_OPS`.

How a graph is converted:
1. Graph inputs are sorted out: the data input (the sequence), inputs bound with `fix`,
   a `sequence_lens` input (becomes `run(X, lengths=...)`), and inputs holding recurrent
   state (`h0`/`c0`), which are traced and paired with the outputs returning the final
   state (automatically, or by hand with `state=[("h0", "hn")]`).
2. The data input's time and batch axes are chosen: from dimension names when they say so
   (time/seq/len/batch...), else by trying the possible assignments; the first one under
   which the whole graph is per-step and every LSTM/GRU/RNN sees time on its sequence axis
   wins (assignments that do not fit fail with an `AxisError`).
3. Every node is converted by its op converter (onnx_ops); constants are folded on the way.
4. Outputs get their ONNX layout per step; a description of how our per-step outputs map
   onto the ONNX tensors is stored in the file's provenance (`onnx`), which `verify_onnx`
   uses to compare with onnxruntime.
"""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from lstm_infer.builder import GraphBuilder

from .errors import ConversionError, UnsupportedOpError
from .onnx_fold import attrs_of, fold_node, is_sym_array, tensor_to_array
from .onnx_graph import Ctx, OnnxConversionError, OnnxValue
from .onnx_ops import FOLD_ONLY, HANDLERS, SYMBOLIC, supported_ops
from .onnx_ops.common import sym_const
from .onnx_sym import HINTS, AxisError, Dim, Dyn, SymError
from .report import ConversionReport

__all__ = ["convert_onnx", "verify_onnx", "SUPPORTED_OPS", "CONSTANT_ONLY_OPS", "load_onnx"]

SUPPORTED_OPS: list[str] = supported_ops()          # ops on per-step data (and constants)
CONSTANT_ONLY_OPS: list[str] = sorted(FOLD_ONLY)     # shape arithmetic: on constants only
NEVER_FOLD = {"If", "Constant", "LSTM", "GRU", "RNN"}
TIME_WORDS = ("time", "seq", "len", "step", "frame")
BATCH_WORDS = ("batch", "n", "b", "bs", "batch_size")


UnsupportedOp = UnsupportedOpError  # the old name, kept importable


# ---- loading and inputs ------------------------------------------------------------------
def load_onnx(src):
    import onnx
    if isinstance(src, onnx.ModelProto):
        return src
    if isinstance(src, (bytes, bytearray)):
        return onnx.load_from_string(bytes(src))
    return onnx.load(os.fspath(src))


def _opset(model) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 1


def _dims(vi) -> list:
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


def _elem_dtype(vi) -> np.dtype:
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


def _graph_inputs(model) -> list:
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
    for vi in _graph_inputs(model):
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


def _choose_data_input(model, fixed: dict, state_pairs: list) -> Any:
    named_state = {a for a, _ in state_pairs}
    cands = [vi for vi in _graph_inputs(model) if vi.name not in fixed and vi.name not in named_state]
    floats = [vi for vi in cands if _elem_dtype(vi).kind == "f"]
    if len(floats) > 1:
        sl = _state_like_inputs(model)
        floats = [vi for vi in floats if vi.name not in sl] or floats
    if len(floats) > 1:
        timed = [vi for vi in floats if any(isinstance(d, str) and any(w in d.lower() for w in TIME_WORDS)
                                            for d in _dims(vi))]
        # else the first one (exporters put the sequence first); the others, if used as
        # data, get an error that names them and suggests --fix / --state
        floats = timed if len(timed) == 1 else floats[:1]
    if len(floats) != 1:
        names = [vi.name for vi in floats] or [vi.name for vi in cands]
        if not names:
            raise ConversionError("the graph has no float input left to be the data input")
        raise ConversionError(
            f"cannot tell the data input among graph inputs {names}: the engine takes one input "
            "sequence; bind the others with fix={NAME: value} (--fix NAME=VALUE) or pair state "
            "with state=[(IN, OUT)] (--state IN=OUT)")
    return floats[0]


def _axis_candidates(dims: list) -> list[tuple[int, int | None]]:
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


# ---- graph walking -----------------------------------------------------------------------
def walk_graph(ctx: Ctx, graph) -> list:
    for init in graph.initializer:
        ctx.values[init.name] = tensor_to_array(init)
    for node in graph.node:
        _run_node(ctx, node)
        ctx.progress += 1
    missing = [o.name for o in graph.output if o.name not in ctx.values]
    if missing:
        raise OnnxConversionError(f"graph outputs {missing} are not produced by any node")
    return [ctx.values[o.name] for o in graph.output]


def _unsupported(node) -> UnsupportedOpError:
    where = f"node {node.name!r}" if node.name else "a node"
    dom = f" (domain {node.domain!r})" if node.domain not in ("", "ai.onnx") else ""
    return UnsupportedOpError(f"unsupported ONNX op {node.op_type!r}{dom} in {where}; supported ops: "
                         f"{', '.join(SUPPORTED_OPS)}; on constants (shape arithmetic) also "
                         f"{', '.join(CONSTANT_ONLY_OPS)} (lstm-infer convert --list-ops)")


def _run_node(ctx: Ctx, node) -> None:
    if node.domain not in ("", "ai.onnx"):
        raise _unsupported(node)
    op = node.op_type
    try:
        ins = [None if not n else ctx.values[n] for n in node.input]
    except KeyError as e:
        raise OnnxConversionError(f"node {node.name!r} ({op}) reads {e.args[0]!r}, which no node "
                                  "produces (is the graph topologically sorted?)") from None
    attrs = attrs_of(node)
    consts = all(x is None or isinstance(x, np.ndarray) for x in ins)
    sym = any(x is not None and is_sym_array(x) for x in ins if isinstance(x, np.ndarray))
    where = f"node {node.name!r} ({op})" if node.name else f"a {op} node"
    try:
        if consts and op not in NEVER_FOLD and not (sym and op in SYMBOLIC):
            # any standard op on constants folds (onnx.reference evaluates what we do not)
            try:
                outs = fold_node(op, node, ins, attrs, ctx.opset)
            except (SymError, OnnxConversionError):
                raise
            except Exception as e:
                if op not in HANDLERS and op not in FOLD_ONLY:
                    raise _unsupported(node) from None
                raise OnnxConversionError(f"folding the constant {op}: {e}") from None
        else:
            if op not in HANDLERS:
                if op in FOLD_ONLY:
                    raise OnnxConversionError(f"{op} is supported only on constants (shape "
                                              "computations); here it gets per-step data")
                raise _unsupported(node)
            outs = HANDLERS[op](ctx, node, ins, attrs)
    except UnsupportedOpError:
        raise
    except AxisError as e:
        raise AxisError(f"{where}: {e}") from None
    except (OnnxConversionError, SymError, ValueError, KeyError, IndexError) as e:
        if str(e).startswith("node ") or str(e).startswith("a "):
            raise OnnxConversionError(str(e)) from None
        raise OnnxConversionError(f"{where}: {e}") from None
    for name, v in zip(node.output, outs):
        if name:
            ctx.values[name] = v


# ---- one conversion attempt ------------------------------------------------------------
def _dim_token(d, names: dict) -> Any:
    """A graph input dim as 'T', 'B' or an int (for non-data inputs)."""
    if isinstance(d, int) and d > 0:
        return d
    if isinstance(d, str) and d in names:
        return names[d]
    return "B"


def _token_dim(tok):
    return {"T": Dim(1, 1, 0), "B": Dim(1, 0, 1)}[tok] if isinstance(tok, str) else int(tok)


class _Attempt:
    def __init__(self, model, data_vi, t_axis, b_axis, fixed: dict):
        self.model, self.data_vi, self.t_axis, self.b_axis, self.fixed = model, data_vi, t_axis, b_axis, fixed
        dims = _dims(data_vi)
        self.data_dims = dims
        self.names = {}
        if isinstance(dims[t_axis], str):
            self.names[dims[t_axis]] = "T"
        if b_axis is not None and isinstance(dims[b_axis], str):
            self.names[dims[b_axis]] = "B"
        self.hints = {"T": dims[t_axis] if isinstance(dims[t_axis], int) and dims[t_axis] > 0 else None,
                      "B": (dims[b_axis] if b_axis is not None and isinstance(dims[b_axis], int)
                            and dims[b_axis] > 0 else None)}

    def input_layout(self, vi) -> list:
        if vi.name == self.data_vi.name:
            out = []
            for k, d in enumerate(self.data_dims):
                out.append("T" if k == self.t_axis else "B" if k == self.b_axis else int(d))
            return out
        return [_dim_token(d, self.names) for d in _dims(vi)]

    def run(self):
        HINTS.update(self.hints)
        model = self.model
        layout = self.input_layout(self.data_vi)
        fshape = tuple(1 if isinstance(t, str) else t for t in layout)
        axes = [(t,) if isinstance(t, str) else (("F",) if t > 1 else ()) for t in layout]
        size = int(np.prod(fshape, dtype=np.int64))
        name = self.data_vi.name
        b = GraphBuilder(name, size)
        ctx = Ctx(b, name, _opset(model), producer=model.producer_name or "",
                  subgraph_walker=walk_graph)
        ctx.used = {x for n in model.graph.node for x in n.input} | {o.name for o in model.graph.output}
        ctx.progress = 0
        self._ctx = ctx
        ctx.values[name] = OnnxValue(Dyn("data", name, np.arange(size, dtype=np.int64).reshape(fshape), axes))
        base = 0
        for vi in _graph_inputs(model):
            if vi.name == name:
                continue
            lay = self.input_layout(vi)
            if vi.name in self.fixed:
                ctx.values[vi.name] = self._fixed_value(vi, lay)
                continue
            fs = tuple(1 if isinstance(t, str) else t for t in lay)
            ax = [(t,) if isinstance(t, str) else (("F",) if t > 1 else ()) for t in lay]
            n = int(np.prod(fs, dtype=np.int64))
            ids = np.arange(base, base + n, dtype=np.int64).reshape(fs)
            ctx.input_ids[vi.name] = (base, fs)
            base += n
            ctx.values[vi.name] = OnnxValue(None, Dyn("ids", "input", ids, ax),
                                      why=f"graph input {vi.name!r} is used as data; the engine takes "
                                          f"one input sequence ({name!r}): bind it with "
                                          f"--fix {vi.name}=VALUE or pair it with --state",
                                      input_name=vi.name)
        outs = walk_graph(ctx, model.graph)
        self.ctx = ctx
        self.outs = outs
        return self

    def _fixed_value(self, vi, lay):
        v = parse_fix_value(self.fixed[vi.name])
        dt = _elem_dtype(vi)
        v = v.astype(dt) if dt.kind in "fiub" else v
        if lay and v.size == 1 and v.ndim < len(lay):
            dims = [_token_dim(t) for t in lay]
            if any(isinstance(d, Dim) for d in dims):
                return OnnxValue(sym_const(v, dims))
            return np.full([int(d) for d in dims], v.reshape(-1)[0], dtype=v.dtype)
        return v


# ---- pairing state and building outputs ------------------------------------------------
def _pair_states(ctx: Ctx, model, outs: list, manual: list) -> dict[str, str]:
    """Graph input -> graph output for recurrent state held inside the engine."""
    out_names = [o.name for o in model.graph.output]
    by_name = dict(zip(out_names, outs))
    state_inputs = []
    for name, (base, fs) in ctx.input_ids.items():
        ids = np.arange(base, base + int(np.prod(fs, dtype=np.int64)))
        mapped = np.array([ctx.init_map.get(int(e), -1) for e in ids], np.int64).reshape(fs)
        if np.any(mapped >= 0):
            state_inputs.append((name, mapped))

    def matches(mapped: np.ndarray, out) -> bool:
        if not isinstance(out, OnnxValue) or out.ids is None or out.ids.ref != "state":
            return False
        o = out.ids.idx
        if o.ndim != mapped.ndim:
            return False
        try:
            ob = np.broadcast_to(o, mapped.shape)
        except ValueError:
            return False
        return bool(np.all(mapped >= 0) and np.array_equal(ob, mapped))

    pairs: dict[str, str] = {}
    mapped_by = dict(state_inputs)
    for a, o in manual:
        if a not in ctx.input_ids:
            raise ConversionError(f"--state {a}={o}: {a!r} is not a graph input left to pair "
                                  f"(inputs: {sorted(ctx.input_ids)})")
        if o not in by_name:
            raise ConversionError(f"--state {a}={o}: {o!r} is not a graph output ({out_names})")
        if a not in mapped_by:
            raise ConversionError(f"--state {a}={o}: input {a!r} does not set the initial state of "
                                  "an LSTM/GRU/RNN node")
        if not matches(mapped_by[a], by_name[o]):
            raise ConversionError(f"--state {a}={o}: output {o!r} does not return, element by "
                                  f"element, the final values of the states that {a!r} initialises")
        pairs[a] = o
    for a, mapped in state_inputs:
        if a in pairs:
            continue
        cands = [o for o in out_names if o not in pairs.values() and matches(mapped, by_name[o])]
        if len(cands) == 1:
            pairs[a] = cands[0]
        elif len(cands) > 1:
            raise ConversionError(f"graph input {a!r} sets recurrent state returned by several "
                                  f"outputs {cands}; choose one with --state {a}=OUTPUT")
        else:
            raise ConversionError(
                f"graph input {a!r} sets the initial state of a recurrent layer, but no graph output "
                "returns that final state element by element; pair it with --state "
                f"{a}=OUTPUT, or bind it with --fix {a}=0 to start from zeros")
    return pairs


def _layout_of(d: Dyn) -> tuple[list, list]:
    return [list(t) for t in d.axes], [int(n) for n in d.fshape]


def _finish(att: _Attempt, manual_state: list) -> tuple[GraphBuilder, dict]:
    ctx, model = att.ctx, att.model
    pairs = _pair_states(ctx, model, att.outs, manual_state)
    paired_outputs = set(pairs.values())
    b = ctx.builder
    outputs_meta = []
    for vi, val in zip(model.graph.output, att.outs):
        if vi.name in paired_outputs:
            continue
        if not isinstance(val, OnnxValue):
            raise ConversionError(f"graph output {vi.name!r} is a constant (it does not depend on "
                                  "the input)")
        try:
            d = val.need()
        except (OnnxConversionError, AxisError, SymError) as e:
            raise OnnxConversionError(f"graph output {vi.name!r}: {e}") from None
        if d.kind != "data":
            raise ConversionError(f"graph output {vi.name!r} does not depend on the input")
        m = ctx.mat(d)
        v = m.ref
        if v == ctx.input_name:
            v = ctx.emit("Activation", vi.name, [v], {"kind": "identity", "size": ctx.size(v)})
        b.output(v, vi.name)
        axes, fs = _layout_of(m)
        outputs_meta.append({"name": vi.name, "value": v, "axes": axes, "fshape": fs,
                             "readout": None if m.readout is None else [int(c) for c in m.readout]})
    if not outputs_meta:
        raise ConversionError("every graph output is recurrent state paired with an input; "
                              "nothing is left to output per step")
    if ctx.lengths_input is not None:
        unused = [n for n in ctx.recurrent_nodes if not any(n.startswith(u) for u in ctx.lengths_nodes)]
        if unused:
            raise ConversionError(f"sequence_lens is given to some recurrent layers but not to "
                                  f"{unused}; run(X, lengths=...) applies it to all of them")
    state_meta = []
    by_name = dict(zip([o.name for o in model.graph.output], att.outs))
    for a, o in pairs.items():
        ids = by_name[o].ids
        axes, fs = _layout_of(ids)
        elems = [list(ctx.state_name(int(s))) for s in ids.idx.reshape(-1)]
        state_meta.append({"input": a, "output": o, "axes": axes, "fshape": fs, "elements": elems})
    inputs_meta = []
    for vi in _graph_inputs(model):
        inputs_meta.append({"name": vi.name, "dtype": str(_elem_dtype(vi)),
                            "dims": att.input_layout(vi)})
    fixed_meta = {}
    for k, v in att.fixed.items():
        arr = parse_fix_value(v)
        if arr.size <= 4096:
            fixed_meta[k] = {"value": arr.tolist(), "dtype": str(arr.dtype), "shape": list(arr.shape)}
    from .onnx_optimize import optimize
    optimize(b, {e[0].rsplit(".", 1)[0] for st in state_meta for e in st["elements"]})
    meta = {"data_input": ctx.input_name, "inputs": inputs_meta, "outputs": outputs_meta,
            "state": state_meta, "lengths_input": ctx.lengths_input, "fixed": fixed_meta,
            "hints": dict(att.hints), "opset": ctx.opset, "producer": model.producer_name}
    return b, meta


def convert_graph(model, fix: dict | None = None, state: list | None = None):
    """Convert an ONNX ModelProto; returns (GraphBuilder, onnx metadata, warnings)."""
    fix = dict(fix or {})
    state = [tuple(p) for p in (state or [])]
    opset = _opset(model)
    if opset < 7:
        raise ConversionError(f"ONNX opset {opset} is too old (7 or newer is supported)")
    for a, _ in state:
        if a in fix:
            raise ConversionError(f"input {a!r} is both fixed and paired as state")
    names = {vi.name for vi in _graph_inputs(model)}
    unknown = [k for k in fix if k not in names]
    if unknown:
        raise ConversionError(f"--fix names {unknown} are not graph inputs ({sorted(names)})")
    data_vi = _choose_data_input(model, fix, state)
    dims = _dims(data_vi)
    errors = []
    saved = dict(HINTS)
    try:
        for t, bax in _axis_candidates(dims):
            att = _Attempt(model, data_vi, t, bax, fix)
            try:
                att.run()
                b, meta = _finish(att, state)
                meta["time_axis"], meta["batch_axis"] = t, bax
                return b, meta, att.ctx.warnings
            except UnsupportedOpError as e:
                raise UnsupportedOpError(str(e)) from None
            except (AxisError, OnnxConversionError, SymError) as e:  # before ConversionError,
                # their base: these mean "try the next axis assignment"
                ctx = getattr(att, "ctx", None) or getattr(att, "_ctx", None)
                errors.append((ctx.progress if ctx is not None else 0, len(errors), e))
            except ConversionError:
                raise
    finally:
        HINTS.clear()
        HINTS.update(saved)
    if not errors:
        raise ConversionError(f"the data input {data_vi.name!r} {dims} has no axis layout to try "
                              "(feature axes need fixed sizes)")
    best = max(errors, key=lambda x: (x[0], -x[1]))[2]
    raise ConversionError(str(best)) from None


# ---- public entry points ------------------------------------------------------------------
def convert_onnx(src, path, dtype: str = "fp32", verify: bool = True, state=None, fix=None,
                 **options) -> ConversionReport:
    """Convert an ONNX file (or ModelProto) to a `.lstm` file; verifies against onnxruntime."""
    if dtype != "fp32":
        raise ConversionError(f"dtype {dtype!r}: this version writes fp32 only")
    if options:
        raise TypeError(f"convert_onnx got unknown options {sorted(options)}")
    model = load_onnx(src)
    b, meta, warnings = convert_graph(model, fix=fix, state=state)
    src_path = os.fspath(src) if isinstance(src, (str, os.PathLike)) else None
    b.save(path, source=src_path, converter="lstm_infer.onnx", onnx=meta)
    import lstm_infer
    m = lstm_infer.load(path)
    report = ConversionReport(os.fspath(path), m.summary(), warnings=list(warnings))
    if verify:
        from .onnx_verify import verify_model
        report.verify = verify_model(m, model, fix=fix, source=src_path or "<onnx model>")
    return report


def verify_onnx(lstm_path, src, inputs=None, fix=None, state=None, **options):
    """Compare a `.lstm` file converted from ONNX with onnxruntime running the source."""
    from .onnx_verify import verify_model
    import lstm_infer
    m = lstm_infer.load(lstm_path)
    model = load_onnx(src)
    return verify_model(m, model, inputs=inputs, fix=fix,
                        source=os.fspath(src) if isinstance(src, (str, os.PathLike)) else "<onnx model>",
                        **options)
