"""Recurrent layers: nn.LSTM / nn.GRU / nn.RNN, which torch.export keeps as one op each
(aten.lstm.input, aten.gru.input, aten.rnn_tanh.input, aten.rnn_relu.input)."""
from __future__ import annotations

from ...layout import GATES, recurrent_weights
from ..context import Context
from ..fx import is_tensor, to_numpy
from ..values import StateStack, TorchValue
from .registry import op

IR_OP = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


def init_state(ctx: Context, c, n: int, size: int, what: str) -> list:
    """Constant initial state (L*D, [B,] size) -> list of per-layer vectors (None: zeros)."""
    if c is None:
        return [None] * n
    if not is_tensor(c):
        ctx.fail(f"the initial state {what} is computed from the model input or passed in "
                 "as an input; PyTorch import supports zeros or constant initial states only")
    a = to_numpy(c)
    if a.ndim == 2:
        a = a[:, None, :]
    if a.ndim != 3 or a.shape[0] != n or a.shape[2] != size:
        ctx.fail(f"initial state {what} of shape {tuple(c.shape)}")
    if not (a == a[:, :1, :]).all():
        ctx.fail(f"initial state {what} differs between batch elements; lstm-infer has one "
                 "initial state per model")
    return [None if not a[k, 0].any() else a[k, 0].copy() for k in range(n)]


def _rnn(ctx: Context, kind: str, a, nonlinearity: str = "tanh"):
    """aten.lstm/gru/rnn_* (nn.LSTM/GRU/RNN): one IR node per layer and direction (and a
    Concat per bidirectional layer); returns (output, h_n[, c_n]) with h_n/c_n as
    StateStacks that only indexing by layer (h_n[-1]) turns into values."""
    x = a["input"]
    if isinstance(x, TorchValue) and x.t is not None:
        ctx.fail(f"{kind} applied to a single time step")
    x = ctx.val(x, kind)
    if len(x.shape) != 3:
        ctx.fail(f"{kind} input of shape {x.shape}")
    batch_first = bool(a["batch_first"])
    for d, r in zip(x.dims, ("B", "T", "F") if batch_first else ("T", "B", "F")):
        ctx.bind(d, r)
    ctx.check_dims(x)
    ctx.set_T(x.shape[1] if batch_first else x.shape[0])
    L, D = int(a["num_layers"]), 2 if a["bidirectional"] else 1
    if a.get("train") and a.get("dropout"):
        ctx.warnings.append(f"{kind} at {ctx.where()} was exported in training mode; "
                            "dropout between layers ignored (inference)")
    has_b = bool(a["has_biases"])
    params = list(a["params"])
    if any(not is_tensor(p) for p in params):
        ctx.fail(f"{kind} weights computed from the input")
    per = len(params) // (L * D)
    if per * L * D != len(params):
        ctx.fail(f"{kind}: {len(params)} weights for {L} layers x {D} directions")
    proj = kind == "lstm" and per == (5 if has_b else 3)
    gates = GATES[IR_OP[kind]]
    H = int(params[1].shape[1]) if not proj else int(params[per - 1].shape[1])
    R = int(params[per - 1].shape[0]) if proj else H
    hx = a["hx"]
    if kind == "lstm":
        h0s = init_state(ctx, hx[0] if hx else None, L * D, R, "h0")
        c0s = init_state(ctx, hx[1] if hx else None, L * D, H, "c0")
    else:
        h0s = init_state(ctx, hx, L * D, H, "h0")
        c0s = [None] * (L * D)
    module = ctx.node_name()
    src, size = x.vid, x.size
    hs, cs = [], []
    for layer in range(L):
        outs = []
        for d in range(D):
            k = layer * D + d
            w = params[k * per:(k + 1) * per]
            w_ih, w_hh = w[0], w[1]
            b_ih, b_hh = (w[2], w[3]) if has_b else (None, None)
            if int(w_ih.shape[1]) != size or int(w_ih.shape[0]) != gates * H:
                ctx.fail(f"{kind} layer {layer}: weight_ih of shape {tuple(w_ih.shape)} for "
                         f"{size} inputs and hidden size {H}")
            attrs = {"input_size": size, "hidden_size": H, "reverse": bool(d)}
            # transposes and bias folding: converters/layout.py
            weights = recurrent_weights(IR_OP[kind], to_numpy(w_ih), to_numpy(w_hh),
                                        to_numpy(b_ih) if has_b else None,
                                        to_numpy(b_hh) if has_b else None,
                                        to_numpy(w[-1]) if proj else None)
            weights["h0"] = h0s[k]
            if kind == "lstm":
                attrs["proj_size"] = R if proj else 0
                weights["c0"] = c0s[k]
            elif kind == "gru":
                attrs["linear_before_reset"] = True
            else:
                attrs["nonlinearity"] = nonlinearity
            name = f"{module}.l{layer}" + ("_reverse" if d else "")
            vid = ctx.emit(IR_OP[kind], name, [src], attrs, weights, R, memo=False)
            outs.append(vid)
            hs.append((vid, bool(d), R))
            cs.append((None, bool(d), H))
        if D == 2:
            src = ctx.emit("Concat", f"{module}.l{layer}.concat", outs, {"sizes": [R, R]}, {}, 2 * R)
        else:
            src = outs[0]
        size = D * R
    out = TorchValue(src, size, x.dims, (x.shape[0], x.shape[1], size), None)
    # h_n is (L*D, B, R) whatever batch_first says.
    bdim = x.dims[0] if batch_first else x.dims[1]
    B = x.shape[0] if batch_first else x.shape[1]
    h = StateStack("h", hs, ("L", bdim, "F"), (L * D, B, R), f"{kind} {module!r}")
    if kind == "lstm":
        c = StateStack("c", cs, ("L", bdim, "F"), (L * D, B, H), f"{kind} {module!r}")
        return (out, h, c)
    return (out, h)


@op("lstm")
def _lstm(ctx: Context, tgt, a):
    if tgt._overloadname != "input":
        ctx.fail("packed sequences are not supported")
    return _rnn(ctx, "lstm", a)


@op("gru")
def _gru(ctx: Context, tgt, a):
    if tgt._overloadname != "input":
        ctx.fail("packed sequences are not supported")
    return _rnn(ctx, "gru", a)


@op("rnn_tanh")
def _rnn_tanh(ctx: Context, tgt, a):
    if tgt._overloadname != "input":
        ctx.fail("packed sequences are not supported")
    return _rnn(ctx, "rnn", a, "tanh")


@op("rnn_relu")
def _rnn_relu(ctx: Context, tgt, a):
    if tgt._overloadname != "input":
        ctx.fail("packed sequences are not supported")
    return _rnn(ctx, "rnn", a, "relu")
