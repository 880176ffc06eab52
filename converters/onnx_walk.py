"""Walking an ONNX graph: one conversion attempt (`Attempt`: the data input laid out with
one choice of time and batch axes, the other inputs as constants or traced state) and
each node through its op converter (`onnx_ops`), folding constants on the way."""
from __future__ import annotations

from typing import Any

import numpy as np

from lstm_infer.builder import GraphBuilder
from lstm_infer.errors import ModelFormatError

from .errors import AxisError, ConversionError, OnnxConversionError, SymError, UnsupportedOpError
from .onnx_fold import attrs_of, fold_node, is_sym_array, tensor_to_array
from .onnx_graph import Ctx, OnnxValue
from .onnx_inputs import elem_dtype, graph_dims, graph_inputs, opset_of, parse_fix_value
from .onnx_ops import FOLD_ONLY, HANDLERS, SYMBOLIC, supported_ops
from .onnx_ops.common import sym_const
from .onnx_sym import HINTS, Dim, Dyn

__all__ = ["Attempt", "walk_graph", "SUPPORTED_OPS", "CONSTANT_ONLY_OPS"]

SUPPORTED_OPS: list[str] = supported_ops()          # ops on per-step data (and constants)
CONSTANT_ONLY_OPS: list[str] = sorted(FOLD_ONLY)     # shape arithmetic: on constants only
NEVER_FOLD = {"If", "Constant", "LSTM", "GRU", "RNN"}


def walk_graph(ctx: Ctx, graph) -> list:
    """Convert every node of `graph` (the model's, or an If branch) into `ctx`; returns the
    values of the graph's outputs."""
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
    return UnsupportedOpError(f"unsupported ONNX op {node.op_type!r}{dom} in {where}; supported "
                              f"ops: {', '.join(SUPPORTED_OPS)}; on constants (shape arithmetic) "
                              f"also {', '.join(CONSTANT_ONLY_OPS)} (lstm-infer convert --list-ops)")


def _located(where: str, e: Exception) -> str:
    msg = str(e)
    return msg if msg.startswith(("node ", "a ")) else f"{where}: {msg}"


def _run_node(ctx: Ctx, node) -> None:
    contrib = node.domain not in ("", "ai.onnx")  # e.g. com.microsoft: registered as "domain.Op"
    op = f"{node.domain}.{node.op_type}" if contrib else node.op_type
    if contrib and op not in HANDLERS:
        raise _unsupported(node)
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
        if consts and not contrib and op not in NEVER_FOLD and not (sym and op in SYMBOLIC):
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
        raise AxisError(_located(where, e)) from None
    except (ConversionError, SymError) as e:   # expected: the message says what and why
        raise OnnxConversionError(_located(where, e)) from None
    except ModelFormatError as e:
        raise OnnxConversionError(f"{where}: the runtime rejects the converted node: {e}") from None
    except Exception as e:
        # anything else (IndexError, KeyError, TypeError, ...) is a bug of the converter:
        # say so, and name the node, rather than show the bare internal message
        raise OnnxConversionError(
            f"{where}: internal error in the ONNX converter ({type(e).__name__}: {e}); this is a "
            "bug in lstm-infer, not in the model: please report it with the model file") from e
    # a data-movement error kept for later (onnx_ops.common.move) names this node
    inherited = {id(x.err) for x in ins if isinstance(x, OnnxValue) and x.err is not None}
    for v in outs:
        if isinstance(v, OnnxValue) and v.err is not None and id(v.err) not in inherited:
            v.err = type(v.err)(_located(where, v.err))
            v.why = str(v.err)
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


class Attempt:
    frame_call = False  # onnx_frames.FrameAttempt: the graph is one step per call

    def __init__(self, model, data_vi, t_axis, b_axis, fixed: dict, dims: list | None = None):
        self.model, self.data_vi, self.t_axis, self.b_axis, self.fixed = model, data_vi, t_axis, b_axis, fixed
        dims = graph_dims(data_vi) if dims is None else list(dims)  # with inferred feature sizes
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
        return [_dim_token(d, self.names) for d in graph_dims(vi)]

    def run(self):
        HINTS.update(self.hints)
        model = self.model
        layout = self.input_layout(self.data_vi)
        fshape = tuple(1 if isinstance(t, str) else t for t in layout)
        axes = [(t,) if isinstance(t, str) else (("F",) if t > 1 else ()) for t in layout]
        size = int(np.prod(fshape, dtype=np.int64))
        name = self.data_vi.name
        b = GraphBuilder(name, size)
        ctx = Ctx(b, name, opset_of(model), producer=model.producer_name or "",
                  subgraph_walker=walk_graph)
        ctx.used = {x for n in model.graph.node for x in n.input} | {o.name for o in model.graph.output}
        ctx.int_input = elem_dtype(self.data_vi).kind in "iu"
        ctx.progress = 0
        ctx.frame_call = self.frame_call
        self._ctx = ctx
        ctx.values[name] = OnnxValue(Dyn("data", name, np.arange(size, dtype=np.int64).reshape(fshape), axes))
        base = 0
        for vi in graph_inputs(model):
            if vi.name == name:
                continue
            lay = self.input_layout(vi)
            if vi.name in self.fixed:
                ctx.values[vi.name] = self._fixed_value(vi, lay)
                continue
            fs = tuple(1 if isinstance(t, str) else t for t in lay)
            ax = [(t,) if isinstance(t, str) else (("F",) if t > 1 else ()) for t in lay]
            n = int(np.prod(fs, dtype=np.int64))
            if "T" in lay and elem_dtype(vi).kind == "f" and not self.frame_call:
                # another float input over the same time axis: a second per-step data input
                # (DeepFilterNet's decoders take the encoder's several outputs)
                b.add_input(vi.name, n)
                ctx.extra_data_inputs.append(vi.name)
                ctx.values[vi.name] = OnnxValue(Dyn("data", vi.name, np.arange(n, dtype=np.int64).reshape(fs), ax))
                continue
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
        dt = elem_dtype(vi)
        v = v.astype(dt) if dt.kind in "fiub" else v
        if lay and v.size == 1 and v.ndim < len(lay):
            dims = [_token_dim(t) for t in lay]
            if any(isinstance(d, Dim) for d in dims):
                return OnnxValue(sym_const(v, dims))
            return np.full([int(d) for d in dims], v.reshape(-1)[0], dtype=v.dtype)
        return v
