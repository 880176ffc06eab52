"""ONNX -> `.lstm`: `convert_onnx`, `verify_onnx`, `SUPPORTED_OPS`.

How a graph is converted:
1. Graph inputs are sorted out: the data input (the sequence), inputs bound with `fix`,
   a `sequence_lens` input (becomes `run(X, lengths=...)`), and inputs holding recurrent
   state (`h0`/`c0`), which are traced and paired with the outputs returning the final
   state (automatically, or by hand with `state=[("h0", "hn")]`).
2. Feature sizes the data input does not declare are read off the weights of the op that
   first consumes it (`onnx_dims`). The data input's time and batch axes are chosen: from
   dimension names when they say so (time/seq/len/batch...), else by trying the possible
   assignments; the first one under which the whole graph is per-step and every
   LSTM/GRU/RNN sees time on its sequence axis wins (assignments that do not fit fail
   with an `AxisError`).
   When none fits, the graph may take one frame per call with its state in and out
   (`onnx_frames`).
3. Every node is converted by its op converter (onnx_ops); constants are folded on the way.
4. Outputs get their ONNX layout per step; a description of how our per-step outputs map
   onto the ONNX tensors is stored in the file's provenance (`onnx`), which `verify_onnx`
   uses to compare with onnxruntime.

Modules: `onnx_inputs` (step 1 and the axis candidates of step 2), `onnx_dims` (undeclared
feature sizes), `onnx_walk` (one attempt, step 3), `onnx_ops` (the op converters),
`onnx_graph` (the conversion context), `onnx_sym` (symbolic shapes), `onnx_fold` (constant
folding), `onnx_optimize` (IR clean-up) and this module (the attempts of step 2, state
pairing and step 4, the public API).
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from lstm_infer.builder import GraphBuilder

from .errors import ConversionError, OnnxConversionError, UnsupportedOpError
from .onnx_dims import infer_feature_dims
from .onnx_graph import Ctx, OnnxValue
from .onnx_inputs import (axis_candidates, choose_data_input, elem_dtype, graph_dims, graph_inputs,
                          load_onnx, opset_of, parse_fix_value)
from .onnx_quant import fold_dynamic_matmuls
from .onnx_unroll import fold_unrolled
from .onnx_sym import HINTS, AxisError, Dyn, SymError, is_time_reversed
from .onnx_ops.shape import UNROLLED
from .onnx_walk import CONSTANT_ONLY_OPS, SUPPORTED_OPS, Attempt
from .report import ConversionReport, VerifyReport

__all__ = ["convert_onnx", "verify_onnx", "convert_graph", "SUPPORTED_OPS", "CONSTANT_ONLY_OPS",
           "load_onnx", "parse_fix_value"]

UnsupportedOp = UnsupportedOpError  # the old name, kept importable


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


def _finish(att: Attempt, manual_state: list) -> tuple[GraphBuilder, dict]:
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
        if is_time_reversed(d):
            raise OnnxConversionError(
                f"graph output {vi.name!r} {d.describe()} is in reverse time order (a Slice with "
                "step -1 over the time axis that is not undone): the engine emits outputs in time "
                "order; reverse it back in the graph")
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
    for vi in graph_inputs(model):
        inputs_meta.append({"name": vi.name, "dtype": str(elem_dtype(vi)),
                            "dims": att.input_layout(vi)})
    fixed_meta = {}
    for k, v in att.fixed.items():
        arr = parse_fix_value(v)
        if arr.size <= 4096:
            fixed_meta[k] = {"value": arr.tolist(), "dtype": str(arr.dtype), "shape": list(arr.shape)}
    from .onnx_optimize import optimize
    optimize(b, {e[0].rsplit(".", 1)[0] for st in state_meta for e in st["elements"]})
    meta = {"data_input": ctx.input_name, "extra_data_inputs": list(ctx.extra_data_inputs),
            "inputs": inputs_meta, "outputs": outputs_meta,
            "state": state_meta, "lengths_input": ctx.lengths_input, "fixed": fixed_meta,
            "hints": dict(att.hints), "opset": ctx.opset, "producer": model.producer_name}
    return b, meta


def _refuse_unrolled(dims: list, t: int, errors: list) -> None:
    """A layout that reads a fixed size-1 axis as time only 'works' for an unrolled recurrence
    by taking its whole fixed window as one step (torch's dynamo export of nn.RNN: input
    [1, 37, 5] became one step of 185 features): when a layout with time on a longer axis
    failed because the graph picks single time steps, refuse with that reason instead."""
    if not (isinstance(dims[t], int) and dims[t] == 1):
        return
    for _, _, e in errors:
        if UNROLLED in str(e):
            raise ConversionError(f"{e}. (The only axis layout that converts reads the fixed "
                                  "size-1 axis as time, i.e. the whole window as one step, which "
                                  "would not be a streaming model of this recurrence.)")


def convert_graph(model, fix: dict | None = None, state: list | None = None,
                  image_height: int | None = None) -> tuple[GraphBuilder, dict, list[str]]:
    """Convert an ONNX ModelProto; returns (GraphBuilder, onnx metadata, warnings).
    `image_height`: for an image input [N, C, H, W] whose height the file leaves open."""
    fix = dict(fix or {})
    state = [tuple(p) for p in (state or [])]
    model, quant_notes = fold_dynamic_matmuls(model)
    model, fold_notes = fold_unrolled(model)
    quant_notes = quant_notes + fold_notes
    opset = opset_of(model)
    if opset < 7:
        raise ConversionError(f"ONNX opset {opset} is too old (7 or newer is supported)")
    for a, _ in state:
        if a in fix:
            raise ConversionError(f"input {a!r} is both fixed and paired as state")
    names = {vi.name for vi in graph_inputs(model)}
    unknown = [k for k in fix if k not in names]
    if unknown:
        raise ConversionError(f"--fix names {unknown} are not graph inputs ({sorted(names)})")
    data_vi = choose_data_input(model, fix, state)
    dims, dim_notes = infer_feature_dims(model, data_vi.name, graph_dims(data_vi))
    errors = []
    saved = dict(HINTS)
    try:
        for t, bax in axis_candidates(dims):
            att = Attempt(model, data_vi, t, bax, fix, dims)
            try:
                att.run()
                _refuse_unrolled(dims, t, errors)
                b, meta = _finish(att, state)
                meta["time_axis"], meta["batch_axis"] = t, bax
                if meta["hints"].get("T") is None and HINTS.get("T") is not None:
                    meta["hints"]["T"] = HINTS["T"]   # a length baked into the graph (Reshape)
                return b, meta, quant_notes + dim_notes + att.ctx.warnings
            except UnsupportedOpError as e:
                raise UnsupportedOpError(str(e)) from None
            except (AxisError, OnnxConversionError, SymError) as e:
                # "try the next axis assignment"; caught before ConversionError, their base
                ctx = getattr(att, "ctx", None) or getattr(att, "_ctx", None)
                errors.append((ctx.progress if ctx is not None else 0, len(errors), e))
            except ConversionError:
                raise
            except Exception as e:  # a bug: say so, but let another axis assignment try
                ctx = getattr(att, "ctx", None) or getattr(att, "_ctx", None)
                errors.append((ctx.progress if ctx is not None else 0, len(errors), OnnxConversionError(
                    f"internal error in the ONNX converter while building the graph's outputs "
                    f"({type(e).__name__}: {e}); this is a bug in lstm-infer, not in the model: "
                    "please report it with the model file")))
        # an image model whose CNN output width becomes time (a CRNN)?
        from .onnx_prelude import convert_with_prelude
        res = convert_with_prelude(model, data_vi, image_height, fix, state, errors, convert_graph)
        if res is not None:
            return res
        # no axis can be time: a graph taking one frame per call (state in and out)?
        from .onnx_frames import try_frame_call
        res = try_frame_call(model, data_vi, fix, state, errors, _finish)
        if res is not None:
            return res
    finally:
        HINTS.clear()
        HINTS.update(saved)
    if not errors:
        raise ConversionError(f"the data input {data_vi.name!r} {dims} has no axis layout to try "
                              "(feature axes need fixed sizes)")
    best = max(errors, key=lambda x: (x[0], -x[1]))[2]
    raise ConversionError(str(best)) from None


# ---- public entry points ------------------------------------------------------------------
def _verifier(m):
    """verify_model, verify_frames for a graph taking one frame per call, verify_images for
    a model with an image prelude."""
    from .onnx_frames import is_frame_call, verify_frames
    from .onnx_verify import verify_model
    if m.graph.prelude is not None:
        from .onnx_prelude_verify import verify_images
        return verify_images
    return verify_frames if is_frame_call(m) else verify_model


def convert_onnx(src: Any, path: str | os.PathLike, dtype: str = "fp32", verify: bool = True,
                 state: list | None = None, fix: dict | None = None,
                 image_height: int | None = None, **options) -> ConversionReport:
    """Convert an ONNX file (or ModelProto) to a `.lstm` file; verifies against onnxruntime.
    `image_height`: the height of an image input the file leaves open (a CRNN's)."""
    if dtype != "fp32":
        raise ConversionError(f"dtype {dtype!r}: this version writes fp32 only")
    if options:
        raise TypeError(f"convert_onnx got unknown options {sorted(options)}")
    model = load_onnx(src)
    b, meta, warnings = convert_graph(model, fix=fix, state=state, image_height=image_height)
    src_path = os.fspath(src) if isinstance(src, (str, os.PathLike)) else None
    b.save(path, source=src_path, converter="lstm_infer.onnx", onnx=meta)
    import lstm_infer
    m = lstm_infer.load(path)
    report = ConversionReport(os.fspath(path), m.summary(), warnings=list(warnings))
    if verify:
        report.verify = _verifier(m)(m, model, fix=fix, source=src_path or "<onnx model>")
    return report


def verify_onnx(lstm_path: str | os.PathLike, src: Any, inputs: np.ndarray | None = None,
                fix: dict | None = None, state: list | None = None, **options) -> VerifyReport:
    """Compare a `.lstm` file converted from ONNX with onnxruntime running the source."""
    import lstm_infer
    m = lstm_infer.load(lstm_path)
    model = load_onnx(src)
    return _verifier(m)(m, model, inputs=inputs, fix=fix,
                        source=os.fspath(src) if isinstance(src, (str, os.PathLike)) else "<onnx model>",
                        **options)
