"""Keras recurrent layers: LSTM, GRU, SimpleRNN (and `RNN` wrapping one of their cells),
one IR node each. Weight layouts (gate orders, GRU biases) are converters.layout's.

Options: `return_sequences=False` gives a value without a time axis that the IR
computes at every step (prefix semantics); `go_backwards=True` is a reverse node, whose
last-step result is the value at step 0 (FirstStep, whole sequences only);
`return_state` exposes h (an LSTM's c is refused); `stateful`, `unroll`, dropout and
initializer options change nothing at inference.
"""
from __future__ import annotations

from ...layout import keras_recurrent_weights
from ..context import Context, Layer
from ..values import KValue, Refused
from .activations import gate_activation
from .registry import layer

IR_OP = {"LSTM": "LSTM", "GRU": "GRU", "SimpleRNN": "RNN",
         "LSTMCell": "LSTM", "GRUCell": "GRU", "SimpleRNNCell": "RNN"}
# Defaults of the IR cells: (recurrent_activation, activation) that need no `activations`.
_DEFAULT = {"LSTM": ("sigmoid", "tanh"), "GRU": ("sigmoid", "tanh"), "RNN": (None, "tanh")}


def _activations(ctx: Context, op: str, cell: dict):
    """The IR `activations` attr for the cell's options, None for the defaults; for an RNN
    with relu the `nonlinearity` attr instead (the fast default path)."""
    act = gate_activation(ctx, cell.get("activation", "tanh"), "activation")
    if op == "RNN":
        if act["kind"] in ("tanh", "relu"):
            return None, act["kind"]
        return [act], "tanh"
    rec = gate_activation(ctx, cell.get("recurrent_activation", "sigmoid"), "recurrent_activation")
    if (rec["kind"], act["kind"]) == _DEFAULT[op]:
        return None, None
    return ([rec, act, act] if op == "LSTM" else [rec, act]), None


def convert_recurrent(ctx: Context, L: Layer, x: KValue, cell_class: str, cell: dict,
                      suffix: str = "", backwards: bool | None = None):
    """One recurrent layer on x -> (IR value id of its per-step output, its size)."""
    op = IR_OP[cell_class]
    if not x.time:
        ctx.fail("a recurrent layer applied to a tensor without a time axis (after "
                 "return_sequences=False or a reduction over time)")
    if len(x.shape) != 1:
        ctx.fail(f"a recurrent layer on per-step tensors of shape {x.shape}; expected one "
                 "feature axis, (batch, time, features)")
    if L.get("time_major"):
        ctx.fail("time_major=True is not supported (Keras 2 option); save the model with "
                 "batch-major inputs")
    for k in ("initial_state", "constants"):
        if k in L.kwargs:
            ctx.fail(f"the layer is called with {k}=...: lstm-infer keeps the recurrent "
                     "state itself and starts from zeros")
    H = int(cell["units"])
    use_bias = bool(cell.get("use_bias", True))
    ws = ctx.weights(L, 3 if use_bias else 2)
    kernel, rec = ws[0], ws[1]
    G = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    if kernel.shape != (x.size, G * H) or rec.shape != (H, G * H):
        ctx.fail(f"kernel {kernel.shape} / recurrent_kernel {rec.shape} do not fit {x.size} "
                 f"inputs and {H} units")
    weights = keras_recurrent_weights(op, kernel, rec, ws[2] if use_bias else None)
    attrs: dict = {"input_size": x.size, "hidden_size": H,
                   "reverse": bool(L.get("go_backwards") if backwards is None else backwards)}
    acts, nonlin = _activations(ctx, op, cell)
    if acts:
        attrs["activations"] = acts
    if op == "LSTM":
        attrs["proj_size"] = 0
    elif op == "GRU":
        attrs["linear_before_reset"] = bool(cell.get("reset_after", True))
    elif nonlin:
        attrs["nonlinearity"] = nonlin
    return ctx.emit(op, [x.vid], attrs, weights, suffix), H


def last_step(ctx: Context, x: KValue, vid: str, H: int, reverse: bool, suffix: str = "") -> KValue:
    """A layer's result for the whole sequence (return_sequences=False, or h of
    return_state): the per-step output (prefix semantics), or for a reverse node the
    value at step 0 (FirstStep: whole sequences only)."""
    if reverse:
        vid = ctx.emit("FirstStep", [vid], {"size": H}, None, suffix + ".last")
        return KValue(vid, (H,), time=False, prefix_ok=False)
    return KValue(vid, (H,), time=False, prefix_ok=x.prefix_ok)


def _layer_outputs(ctx: Context, L: Layer, x: KValue, cell_class: str, cell: dict):
    vid, H = convert_recurrent(ctx, L, x, cell_class, cell)
    reverse = bool(L.get("go_backwards"))
    if L.get("return_sequences"):
        if reverse:
            ctx.fail("go_backwards=True with return_sequences=True returns the outputs in "
                     "reversed time order, which lstm-infer cannot express; use "
                     "Bidirectional, or return_sequences=False")
        out = KValue(vid, (H,), time=True, prefix_ok=x.prefix_ok and not reverse)
    else:
        out = last_step(ctx, x, vid, H, reverse)
    if L.get("stateful"):
        ctx.warn("stateful=True: lstm-infer streams keep the state between calls anyway; "
                 "run() starts every sequence from zeros")
    if not L.get("return_state"):
        return out
    h = out if not L.get("return_sequences") else last_step(ctx, x, vid, H, reverse, ".h")
    states = [h]
    if IR_OP[cell_class] == "LSTM":
        states.append(Refused("the cell state c returned by an LSTM with return_state=True "
                              "is not supported (only the output and h)"))
    return [out, *states]


@layer("LSTM", "GRU", "SimpleRNN")
def _rnn(ctx: Context, L: Layer, ins: list, per_frame: bool):
    if per_frame:
        ctx.fail("a recurrent layer inside TimeDistributed is not supported")
    return _layer_outputs(ctx, L, ins[0], L.class_name, L.config)


@layer("RNN")
def _rnn_wrapper(ctx: Context, L: Layer, ins: list, per_frame: bool):
    cell = L.get("cell") or {}
    cls = cell.get("class_name")
    if cls not in ("LSTMCell", "GRUCell", "SimpleRNNCell") or per_frame:
        ctx.fail(f"keras.layers.RNN with cell {cls!r}: supported cells are LSTMCell, GRUCell "
                 "and SimpleRNNCell (one cell; StackedRNNCells and custom cells are not)")
    return _layer_outputs(ctx, L, ins[0], cls, cell.get("config", {}))
