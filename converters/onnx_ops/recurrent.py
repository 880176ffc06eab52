"""ONNX LSTM, GRU and RNN (opsets 7-22, every attribute and optional input).

One ONNX node becomes one IR node per direction (a bidirectional layer: a forward node, a
reverse node and a Concat, forward first). Weights are re-laid out for our kernels by
`converters.layout.onnx_recurrent_weights` (gate orders, bias folding, peepholes,
transposes: see converters/layout.py).

Outputs: Y is a per-step value; Y_h of a forward direction is its per-step h (read at the
last step, or at lengths-1 with sequence_lens); a reverse direction's final state is reached
at step 0, so it goes through a FirstStep node (the step-0 value at every step) and then
reads like a forward one. When Y_c is used, the LSTM nodes get `output_cell` (per-step
output [h, c]) and Y_c reads the c half; paired with an initial_c input it is state.
An X reversed in time (Slice with step -1 over the time axis, as a hand-built
bidirectional layer does: reverse, forward LSTM, reverse back) makes each direction run
the other way, and Y comes out reversed too.
Initial states that come from graph inputs are traced (state ids) so that the importer can
pair `initial_h` inputs with `Y_h` outputs and keep that state inside the engine.
"""
from __future__ import annotations

import numpy as np

from ..layout import GATES, onnx_recurrent_weights
from ..onnx_fold import is_sym_array
from ..onnx_graph import READ_LAST, READ_LEN, OnnxConversionError, OnnxValue, clean_name
from ..onnx_sym import HINTS, AxisError, Dyn
from .common import is_val
from .frame_call import per_call, seq_as_time
from .registry import op

DEFAULT_ACTS = {"LSTM": ["sigmoid", "tanh", "tanh"], "GRU": ["sigmoid", "tanh"], "RNN": ["tanh"]}
ACT_NAMES = {"sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu", "affine": "affine",
             "leakyrelu": "leaky_relu", "thresholdedrelu": "thresholded_relu",
             "scaledtanh": "scaled_tanh", "hardsigmoid": "hard_sigmoid", "elu": "elu",
             "softsign": "softsign", "softplus": "softplus"}
# Which functions consume an alpha / a beta from activation_alpha / activation_beta, and
# their defaults when the lists run out (as onnxruntime reads them).
ACT_USES = {"affine": (True, True), "leakyrelu": (True, False), "thresholdedrelu": (True, False),
            "scaledtanh": (True, True), "hardsigmoid": (True, True), "elu": (True, False)}
ACT_DEFAULTS = {"leakyrelu": (0.01, 0.0), "hardsigmoid": (0.2, 0.5), "elu": (1.0, 0.0)}


def parse_activations(a: dict, op_type: str, D: int) -> list[list[dict]]:
    n = len(DEFAULT_ACTS[op_type])
    names = a.get("activations")
    if not names:
        names = DEFAULT_ACTS[op_type] * D
    elif len(names) == n and D == 2:
        names = list(names) * 2
    if len(names) != n * D:
        raise OnnxConversionError(f"{op_type} lists {len(names)} activations, expected {n * D}")
    alphas, betas = list(a.get("activation_alpha", [])), list(a.get("activation_beta", []))
    out = []
    for name in names:
        key = name.lower()
        if key not in ACT_NAMES:
            raise OnnxConversionError(f"{op_type} activation {name!r} is not one of "
                                      f"{', '.join(sorted(ACT_NAMES))}")
        ua, ub = ACT_USES.get(key, (False, False))
        da, db = ACT_DEFAULTS.get(key, (0.0, 0.0))
        alpha = (alphas.pop(0) if alphas else da) if ua else 0.0
        beta = (betas.pop(0) if betas else db) if ub else 0.0
        out.append({"kind": ACT_NAMES[key], "alpha": float(alpha), "beta": float(beta)})
    return [out[i * n:(i + 1) * n] for i in range(D)]


def _const(x, what: str) -> np.ndarray | None:
    if x is None:
        return None
    if is_val(x):
        raise OnnxConversionError(f"{what} must be a constant (an initializer); if it is a graph "
                                  f"input, bind it with --fix NAME=FILE.npy / fix={{...}}")
    return np.asarray(x, np.float64)


def _initial(ctx, x, layout: int, D: int, H: int, what: str):
    """-> ("none", None) | ("const", (D, H) array) | ("ids", (D, Bx, H) ids array)."""
    if x is None:
        return "none", None
    if is_val(x):
        if x.data is not None and x.data.kind == "const":
            arr = np.asarray(ctx.mat(x.data).ref, np.float64).reshape(x.data.fshape)
        elif x.data is None and x.ids is not None:
            ids = x.ids.idx
            if ids.ndim != 3:
                raise OnnxConversionError(f"{what} has rank {ids.ndim}, expected 3")
            ids = ids if layout == 0 else ids.transpose(1, 0, 2)
            if ids.shape[0] != D or ids.shape[2] != H:
                raise OnnxConversionError(f"{what} has shape {x.ids.dims()}, expected "
                                          f"({D}, batch, {H})")
            return "ids", ids
        else:
            raise OnnxConversionError(f"{what} computed from the input sequence is not supported "
                                      "(initial states must be constants or graph inputs)")
    else:
        arr = np.asarray(x, np.float64)
    if arr.ndim != 3:
        raise OnnxConversionError(f"{what} has rank {arr.ndim}, expected 3")
    arr = arr if layout == 0 else arr.transpose(1, 0, 2)
    if arr.shape[0] != D or arr.shape[2] != H:
        raise OnnxConversionError(f"{what} has shape {arr.shape}, expected ({D}, batch, {H})")
    if not np.all(arr == arr[:, :1, :]):
        raise OnnxConversionError(f"{what} differs between batch entries; the engine keeps one "
                                  "initial state per model (set per-stream state with set_state)")
    return "const", arr[:, 0, :]


def _lengths(ctx, x, node_name: str) -> bool:
    if x is None:
        return False
    if is_val(x):
        if x.input_name is None:
            raise OnnxConversionError("sequence_lens computed inside the graph is not supported; it "
                                      "must be a graph input (given to run(X, lengths=...))")
        if ctx.lengths_input not in (None, x.input_name):
            raise OnnxConversionError("two different sequence_lens inputs")
        ctx.lengths_input = x.input_name
        ctx.lengths_nodes.append(node_name)
        return True
    arr = np.asarray(x)
    if is_sym_array(arr):
        return False  # lengths = the symbolic sequence length: every step is valid
    t0 = HINTS.get("T")
    if t0 is not None and np.all(arr == t0):
        return False
    raise OnnxConversionError(f"constant sequence_lens {arr.tolist()} is not supported; make it a "
                              "graph input (run(X, lengths=...) takes it)")


@op("LSTM", "GRU", "RNN")
def _recurrent(ctx, node, ins, a):
    kind = node.op_type
    G = GATES[kind]
    ins = list(ins) + [None] * (8 - len(ins))
    X = ins[0]
    if not is_val(X) or X.data is None:
        raise OnnxConversionError(f"{kind} input X must come from the graph's data input")
    W = _const(ins[1], f"{kind} W")
    R = _const(ins[2], f"{kind} R")
    B = _const(ins[3], f"{kind} B")
    P = _const(ins[7], "LSTM P") if kind == "LSTM" else None
    D = W.shape[0]
    H = int(a.get("hidden_size", R.shape[-1]))
    I = W.shape[2]
    direction = a.get("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise OnnxConversionError(f"{kind} direction {direction!r} is not supported")
    if D != (2 if direction == "bidirectional" else 1):
        raise OnnxConversionError(f"{kind} W has {D} directions but direction is {direction!r}")
    if W.shape[1] != G * H or R.shape != (D, G * H, H):
        raise OnnxConversionError(f"{kind} W/R shapes {W.shape}/{R.shape} do not fit hidden_size {H}")
    layout = int(a.get("layout", 0))
    d = X.need()
    if d.rank != 3:
        raise OnnxConversionError(f"{kind} input X has rank {d.rank}, expected 3")
    seq_ax, bat_ax = (0, 1) if layout == 0 else (1, 0)
    if ctx.frame_call:
        d = seq_as_time(d, seq_ax, f"{kind} node {node.name!r}")
    if d.axes[seq_ax] not in (("T",), ("R",)):
        raise AxisError(f"{kind} node {node.name!r}: its sequence axis {seq_ax} of X {d.describe()} "
                        "is not the time axis")
    # X in reverse time order (Slice step -1 before the node): each direction runs the
    # other way in time, and Y comes out in reverse order too (a hand-built bidirectional
    # layer reverses it back before using it).
    flipped = d.axes[seq_ax] == ("R",)
    ttok = d.axes[seq_ax]
    if d.axes[bat_ax] not in (("B",), ()):
        raise AxisError(f"{kind} node {node.name!r}: its batch axis {bat_ax} of X {d.describe()} "
                        "holds features or time")
    if d.fshape[2] != I or not d.is_feature_axis(2):
        raise OnnxConversionError(f"{kind} input X {d.describe()} does not have {I} features")
    btok = d.axes[bat_ax]
    xm = ctx.as_data(d)
    base = clean_name(node.name or kind.lower())
    uses_len = _lengths(ctx, ins[4], base)
    if uses_len and flipped:
        raise OnnxConversionError(f"{kind} node {node.name!r}: sequence_lens with an input reversed "
                                  "in time (Slice step -1) is not supported: the reversal would move "
                                  "the padding of shorter sequences to their start")
    acts = parse_activations(a, kind, D)
    clip = a.get("clip")
    init_h = _initial(ctx, ins[5], layout, D, H, f"{kind} initial_h")
    init_c = _initial(ctx, ins[6], layout, D, H, "LSTM initial_c") if kind == "LSTM" else ("none", None)
    lbr = bool(int(a.get("linear_before_reset", 0)))
    if kind == "GRU" and not lbr and ctx.producer.lower().startswith("pytorch"):
        ctx.warnings.append(
            f"GRU node {node.name!r}: the file says linear_before_reset=0, but PyTorch's GRU is "
            "linear_before_reset=1 (a known exporter mistake); converted as written, so results "
            "match onnxruntime on this file, not necessarily the original PyTorch model")
    # Only a Y_c that something reads needs the [h, c] output (a paired Y_c is state).
    cell = kind == "LSTM" and len(node.output) > 2 and node.output[2] in ctx.used
    outs_v, sids_h, sids_c = [], [], []
    for k in range(D):
        # one step per call with the state passed in: each direction steps forwards
        rev = ((direction == "reverse" or k == 1) != flipped) and not ctx.frame_call
        name = base + ("_reverse" if D == 2 and k == 1 else "")
        attrs: dict = {"input_size": I, "hidden_size": H, "reverse": rev}
        peephole = P[k] if P is not None and np.any(P[k] != 0) else None
        w = onnx_recurrent_weights(kind, W[k], R[k], None if B is None else B[k], peephole)
        if kind == "LSTM":
            attrs["proj_size"] = 0
            if cell:
                attrs["output_cell"] = True
            if int(a.get("input_forget", 0)):
                attrs["input_forget"] = True
        elif kind == "GRU":
            attrs["linear_before_reset"] = lbr
        act = acts[k]
        if kind == "RNN":
            if [x["kind"] for x in act] == ["relu"]:
                attrs["nonlinearity"] = "relu"
            elif [x["kind"] for x in act] != ["tanh"]:
                attrs["activations"] = act
        elif [x["kind"] for x in act] != DEFAULT_ACTS[kind]:
            attrs["activations"] = act
        if clip is not None:
            attrs["clip"] = float(clip)
        if init_h[0] == "const" and np.any(init_h[1][k] != 0):
            w["h0"] = init_h[1][k]
        if init_c[0] == "const" and np.any(init_c[1][k] != 0):
            w["c0"] = init_c[1][k]
        v = ctx.emit(kind, name, [xm.ref], attrs, w)
        node_name = v[:-len(".out")]
        ctx.recurrent_nodes.append(node_name)
        outs_v.append(v)
        sids_h.append(ctx.new_state(node_name, "h", H))
        if kind == "LSTM":
            sids_c.append(ctx.new_state(node_name, "c", H))
    for (mode, ids), sids, role in ((init_h, sids_h, "h"), (init_c, sids_c, "c")):
        if mode != "ids":
            continue
        for k in range(D):
            for j in range(H):
                for e in ids[k, :, j].reshape(-1).tolist():
                    prev = ctx.init_map.get(e)
                    if prev is not None and prev != sids[k][j]:
                        raise OnnxConversionError("one graph input element initialises two states")
                    ctx.init_map[e] = int(sids[k][j])
    width = 2 * H if cell else H  # each direction's output: h, or [h, c]
    y = outs_v[0] if D == 1 else ctx.emit("Concat", base + "_concat", outs_v, {"sizes": [width] * D})
    finals = []
    for k in range(D):
        # one step per call with the state passed in: each direction steps forwards
        rev = ((direction == "reverse" or k == 1) != flipped) and not ctx.frame_call   # final state at step 0
        finals.append(ctx.emit("FirstStep", f"{base}_final{k}", [outs_v[k]], {"size": width})
                      if rev else outs_v[k])
    fin = finals[0] if D == 1 else ctx.emit("Concat", base + "_final", finals, {"sizes": [width] * D})
    dtok = ("F",) if D == 2 else ()
    htok = ("F",) if H > 1 else ()
    hpos = np.concatenate([k * width + np.arange(H, dtype=np.int64) for k in range(D)])
    results = []
    # Y: layout 0 (T, D, B, H); layout 1 (B, T, D, H)
    if layout == 0:
        y_idx, y_axes = hpos.reshape(1, D, 1, H), [ttok, dtok, btok, htok]
        h_shape, h_axes = (D, 1, H), [dtok, btok, htok]
    else:
        y_idx, y_axes = hpos.reshape(1, 1, D, H), [btok, ttok, dtok, htok]
        h_shape, h_axes = (1, D, H), [btok, dtok, htok]
    results.append(OnnxValue(Dyn("data", y, y_idx, y_axes, None)))
    readout = np.full(D * width, READ_LEN if uses_len else READ_LAST, np.int64)
    ids_h = np.stack(sids_h).reshape(h_shape)
    results.append(OnnxValue(Dyn("data", fin, hpos.reshape(h_shape), h_axes, readout),
                       Dyn("ids", "state", ids_h, h_axes)))
    if kind == "LSTM":
        ids_c = np.stack(sids_c).reshape(h_shape)
        if cell:
            results.append(OnnxValue(Dyn("data", fin, (hpos + H).reshape(h_shape), h_axes, readout),
                               Dyn("ids", "state", ids_c, h_axes)))
        else:
            results.append(OnnxValue(None, Dyn("ids", "state", ids_c, h_axes),
                               why=f"LSTM node {node.name!r}: Y_c is not an output of this node"))
    if ctx.frame_call:
        results = per_call(results)
    return results[:max(len(node.output), 1)]
