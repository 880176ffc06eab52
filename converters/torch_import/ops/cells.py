"""Cell loops: an nn.LSTMCell / GRUCell / RNNCell called in a Python loop over time, which
torch.export unrolls into one aten.*_cell call per step, folded back into one recurrent
IR node. Each call after the first must receive exactly the state the same cell returned
at the previous step (`values.CellLoop` tracks that); stacking the per-step outputs over
all T steps (ops/time.py) makes a per-step value again. Where the loop starts is checked
when the walk ends (`walk.Walker.finish_cells`)."""
from __future__ import annotations

from ...layout import recurrent_weights
from ..context import Context
from ..fx import is_tensor, to_numpy
from ..values import CellC, CellLoop, TorchValue
from .recurrent import IR_OP, init_state
from .registry import op


def _cell(ctx: Context, kind: str, a, nonlinearity: str = "tanh"):
    """One call of a cell at step x.t. The first call emits the recurrent node; every later
    call must continue it: the next step in one direction, fed the state the cell returned
    at its previous call. Then it returns the same per-step value at step x.t."""
    x = a["input"]
    if isinstance(x, TorchValue) and x.t is None:
        ctx.fail(f"{kind} cell applied to a whole sequence")
    x = ctx.val(x, f"{kind} cell")
    ctx.need_last_feature(x, f"{kind} cell")
    if len(x.shape) == 2:
        ctx.bind(x.dims[0], "B")
    w_ih, w_hh, b_ih, b_hh = a["w_ih"], a["w_hh"], a.get("b_ih"), a.get("b_hh")
    if any(w is not None and not is_tensor(w) for w in (w_ih, w_hh, b_ih, b_hh)):
        ctx.fail(f"{kind} cell weights computed from the input")
    H = int(w_hh.shape[1])
    key = (kind, nonlinearity, ctx.digest(w_ih), ctx.digest(w_hh), ctx.digest(b_ih),
           ctx.digest(b_hh), x.vid)
    hx = a["hx"]
    h, c = (hx[0], hx[1]) if kind == "lstm" else (hx, None)
    rec = ctx.cells.get(key)
    if rec is None:
        if not is_tensor(h) or (kind == "lstm" and not is_tensor(c)):
            if isinstance(h, TorchValue) and any(r.out == h.vid and k[:6] == key[:6]
                                                 for k, r in ctx.cells.items()):
                ctx.fail(f"the {kind} cell gets a different input at step {x.t} than at its "
                         "earlier calls (its output fed back as input, i.e. an autoregressive "
                         "loop); lstm-infer folds a cell loop only when the cell reads the "
                         "same per-step input at every step")
            ctx.fail(f"the first call of the {kind} cell gets a state computed from the "
                     "input; initial states must be zeros or constants")
        h0 = init_state(ctx, h[None] if h.dim() < 3 else h, 1, H, "h0")[0]
        attrs = {"input_size": x.size, "hidden_size": H, "reverse": False}
        # transposes and bias folding: converters/layout.py
        weights = recurrent_weights(IR_OP[kind], to_numpy(w_ih), to_numpy(w_hh),
                                    None if b_ih is None else to_numpy(b_ih),
                                    None if b_ih is None else to_numpy(b_hh))
        weights["h0"] = h0
        if kind == "lstm":
            attrs["proj_size"] = 0
            weights["c0"] = init_state(ctx, c[None] if c.dim() < 3 else c, 1, H, "c0")[0]
        elif kind == "gru":
            attrs["linear_before_reset"] = True
        else:
            attrs["nonlinearity"] = nonlinearity
        vid = ctx.emit(IR_OP[kind], ctx.node_name(), [x.vid], attrs, weights, H, memo=False)
        rec = CellLoop(ctx.nodes[-1], vid, x.t, x.t, 0, ctx.where())
        ctx.cells[key] = rec
    else:
        ok = isinstance(h, TorchValue) and h.vid == rec.out and h.t == rec.t_last
        if kind == "lstm":
            ok = ok and isinstance(c, CellC) and c.key == key and c.t == rec.t_last
        if not ok:
            if is_tensor(h):
                ctx.fail(f"the {kind} cell is called again with a fresh initial state at step "
                         f"{x.t}; lstm-infer folds a cell loop only when every call continues "
                         "the state of the previous call")
            ctx.fail(f"the state passed to the {kind} cell at step {x.t} is not the state "
                     "that cell returned at its previous call (state fed back through "
                     "other ops is not supported)")
        dt = x.t - rec.t_last
        if rec.direction == 0:
            if dt not in (1, -1):
                ctx.fail(f"the {kind} cell is called at time step {rec.t_last} and then at "
                         f"{x.t}; a cell loop must visit consecutive steps (feeding an "
                         "output back as the next input is not supported)")
            rec.direction = dt
        elif dt != rec.direction:
            ctx.fail(f"the {kind} cell goes from time step {rec.t_last} to {x.t}; a cell loop "
                     "must visit consecutive steps in one direction")
        rec.t_last = x.t
    hv = TorchValue(rec.out, H, x.dims, tuple(x.shape[:-1]) + (H,), x.t)
    if kind == "lstm":
        return (hv, CellC(key, x.t))
    return hv


@op("lstm_cell")
def _lstm_cell(ctx: Context, tgt, a):
    return _cell(ctx, "lstm", a)


@op("gru_cell")
def _gru_cell(ctx: Context, tgt, a):
    return _cell(ctx, "gru", a)


@op("rnn_tanh_cell")
def _rnn_tanh_cell(ctx: Context, tgt, a):
    return _cell(ctx, "rnn", a, "tanh")


@op("rnn_relu_cell")
def _rnn_relu_cell(ctx: Context, tgt, a):
    return _cell(ctx, "rnn", a, "relu")
