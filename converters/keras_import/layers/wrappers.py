"""Keras wrappers: Bidirectional (a forward node, a reverse node and their merge) and
TimeDistributed (the inner layer applied to each frame)."""
from __future__ import annotations

from ..context import Context, Layer
from ..values import KValue
from .recurrent import IR_OP, convert_recurrent, last_step
from .registry import LAYERS, layer

MERGE_MODES = ("concat", "sum", "mul", "ave", None)
SUPPORTED_PER_FRAME = ("Dense, Flatten, Reshape, Dropout, Activation, ReLU, LeakyReLU, ELU, "
                       "Softmax, LayerNormalization, BatchNormalization")


def _sub_layer(L: Layer, cfg: dict, weights: list, suffix: str) -> Layer:
    return Layer(f"{L.name}/{cfg.get('config', {}).get('name', suffix)}", cfg.get("class_name", "?"),
                 cfg.get("config", {}), weights, L.kwargs)


def _cell_of(ctx: Context, sub: Layer) -> tuple[str, dict]:
    if sub.class_name in ("LSTM", "GRU", "SimpleRNN"):
        return sub.class_name, sub.config
    if sub.class_name == "RNN":
        cell = sub.config.get("cell") or {}
        if cell.get("class_name") in IR_OP:
            return cell["class_name"], cell.get("config", {})
    ctx.fail(f"Bidirectional around {sub.class_name}: supported are LSTM, GRU, SimpleRNN and "
             "RNN with one of their cells")


@layer("Bidirectional")
def _bidirectional(ctx: Context, L: Layer, ins: list, per_frame: bool):
    """Keras runs the backward layer on the reversed sequence and, with
    return_sequences, flips its outputs back into time order: that is the IR's reverse
    node. Without return_sequences each direction gives its final result: the forward
    node's last step and the reverse node's value at step 0 (FirstStep)."""
    x = ins[0]
    mode = L.get("merge_mode", "concat")
    if mode not in MERGE_MODES:
        ctx.fail(f"merge_mode={mode!r}; supported: {', '.join(map(str, MERGE_MODES))}")
    fcfg = L.get("layer") or {}
    bcfg = L.get("backward_layer") or {**fcfg, "config": {**fcfg.get("config", {}),
                                                         "go_backwards": True}}
    fconf, bconf = fcfg.get("config", {}), bcfg.get("config", {})
    n_f = 3 if fconf.get("use_bias", _cell_conf(fconf).get("use_bias", True)) else 2
    fwd = _sub_layer(L, fcfg, L.weights[:n_f], "forward")
    bwd = _sub_layer(L, bcfg, L.weights[n_f:], "backward")
    if fconf.get("return_state"):
        ctx.fail("return_state=True in Bidirectional is not supported")
    if fconf.get("go_backwards") or not bconf.get("go_backwards"):
        ctx.fail("a forward layer with go_backwards=True (or a backward layer without it) "
                 "is not supported")
    seqs = bool(fconf.get("return_sequences"))
    outs = []
    for sub, reverse, tag in ((fwd, False, ".forward"), (bwd, True, ".backward")):
        saved, ctx.layer = ctx.layer, sub
        try:
            cls, cell = _cell_of(ctx, sub)
            vid, H = convert_recurrent(ctx, sub, x, cls, cell, backwards=reverse)
        finally:
            ctx.layer = saved
        if seqs:
            outs.append(KValue(vid, (H,), True, x.prefix_ok and not reverse))
        else:
            outs.append(last_step(ctx, x, vid, H, reverse, tag))
    f, b = outs
    if mode is None:
        return [f, b]
    if mode == "concat":
        vid = ctx.emit("Concat", [f.vid, b.vid], {"sizes": [f.size, b.size]})
        return KValue(vid, (f.size + b.size,), f.time, False)
    kind = {"sum": "add", "mul": "mul", "ave": "add"}[mode]
    out = ctx.binary(kind, f, b, suffix=".merge")
    if mode == "ave":
        out = ctx.act(out, "affine", 0.5, 0.0, suffix=".ave")
    return out


def _cell_conf(conf: dict) -> dict:
    return (conf.get("cell") or {}).get("config", {})


@layer("TimeDistributed")
def _time_distributed(ctx: Context, L: Layer, ins: list, per_frame: bool):
    x = ins[0]
    if not x.time or per_frame:
        ctx.fail("TimeDistributed on a tensor without a time axis")
    inner = _sub_layer(L, L.get("layer") or {}, L.weights, "layer")
    fn = LAYERS.get(inner.class_name)
    if fn is None or inner.class_name in ("LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional",
                                           "TimeDistributed", "Embedding"):
        ctx.fail(f"TimeDistributed({inner.class_name}) is not supported; inside "
                 f"TimeDistributed: {SUPPORTED_PER_FRAME}")
    saved, ctx.layer = ctx.layer, inner
    try:
        return fn(ctx, inner, ins, True)
    finally:
        ctx.layer = saved
