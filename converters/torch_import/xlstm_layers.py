"""The `xlstm` package's modules (xLSTMBlockStack, mLSTMBlock / sLSTMBlock) as IR nodes,
read by class and weights: their parallel forms do not trace into per-step ops, so the
torch importer does not trace them (see xlstm_hook.py) but emits, per block,

  mLSTM block: LayerNorm -> MLSTM -> Add (residual)
  sLSTM block: LayerNorm -> SLSTM -> Add, then the gated feed-forward when present:
               LayerNorm -> Linear (gate half) / Linear (up half) -> act -> Mul -> Linear -> Add
  stack:       the blocks, then post_blocks_norm (LayerNorm) when the config has it.

Weight layouts (every transpose here): nn.Linear weight (out, in) -> W (in, out);
LinearHeadwiseExpand weight (G, out, in) -> (G, in, out); Conv1d weight (C, 1, K) -> (K, C);
the package's LayerNorm / MultiHeadLayerNorm with residual_weight keep `weight` as w with
scale 1 + w, folded here; the sLSTM vanilla cell's internal `_recurrent_kernel_`
(NH, 4*DH, DH) -> (NH, DH, 4*DH) and its `_bias_` (4, NH, DH) gate-major is the IR's bias.
`emit(op, name, inputs, attrs, weights, size) -> value id` is the importer's Context.emit.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import ConversionError

Emit = Callable[..., str]


def _np(t) -> np.ndarray | None:
    return None if t is None else t.detach().float().cpu().numpy().copy()


def _t(t) -> np.ndarray | None:
    """nn.Linear weight (out, in) -> (in, out)."""
    return None if t is None else np.ascontiguousarray(_np(t).T)


def _norm_scale(ln) -> np.ndarray | None:
    """The package's LayerNorm scale: 1 + weight (residual_weight) or weight, None without."""
    if ln.weight is None:
        return None
    w = _np(ln.weight)
    return (1.0 + w).astype(np.float32) if ln.residual_weight else w


def _layer_norm(emit: Emit, ln, x: str, name: str, d: int) -> str:
    if ln.ndim != d:
        raise ConversionError(f"{name}: LayerNorm over {ln.ndim} features of a {d}-feature value")
    return emit("LayerNorm", name, [x], {"size": d, "eps": float(ln.eps)},
                {"weight": _norm_scale(ln), "bias": _np(ln.bias)}, d)


def _conv(conv1d, inner: int, name: str) -> tuple[int, dict]:
    """(kernel, weights) of the package's CausalConv1d (depthwise, feature_dim channels)."""
    cfg = conv1d.config
    if cfg.kernel_size == 0:
        return 0, {}
    if cfg.channel_mixing or conv1d.conv.groups != inner:
        raise ConversionError(f"{name}: CausalConv1d with channel_mixing is not supported "
                              "(the xLSTM blocks use depthwise convolutions)")
    w = _np(conv1d.conv.weight)[:, 0, :]  # (C, 1, K) -> (C, K)
    return cfg.kernel_size, {"conv_w": np.ascontiguousarray(w.T), "conv_b": _np(conv1d.conv.bias)}


def _headwise(m) -> np.ndarray:
    """LinearHeadwiseExpand weight (G, out, in) -> (G, in, out); square blocks only."""
    w = _np(m.weight)
    if w.shape[1] != w.shape[2]:
        raise ConversionError(f"LinearHeadwiseExpand with expand_factor_up != 1 ({w.shape[2]} -> "
                              f"{w.shape[1]} per head) is not supported")
    return np.ascontiguousarray(w.transpose(0, 2, 1))


def mlstm_layer(emit: Emit, layer, x: str, name: str) -> str:
    cfg = layer.config
    d, inner, cell = cfg.embedding_dim, cfg._inner_embedding_dim, layer.mlstm_cell
    nh = cell.config.num_heads
    k, conv = _conv(layer.conv1d, inner, name)
    if k == 0:
        raise ConversionError(f"{name}: mLSTMLayer with conv1d_kernel_size 0 is not supported")
    qkv = [layer.q_proj, layer.k_proj, layer.v_proj]
    blocks = {p.config.num_heads for p in qkv}
    if len(blocks) != 1:
        raise ConversionError(f"{name}: q/k/v projections with different head counts")
    bs = inner // blocks.pop()
    biases = [_np(p.bias) for p in qkv]
    if any(b is None for b in biases) and not all(b is None for b in biases):
        raise ConversionError(f"{name}: q/k/v projections with and without bias")
    weights = {
        "W_up": _t(layer.proj_up.weight), "b_up": _np(layer.proj_up.bias), **conv,
        "W_qkv": np.stack([_headwise(p) for p in qkv]),
        "b_qkv": None if biases[0] is None else np.concatenate(biases),
        "W_if": np.concatenate([_t(cell.igate.weight), _t(cell.fgate.weight)], axis=1),
        "b_if": np.concatenate([_np(cell.igate.bias), _np(cell.fgate.bias)]),
        "norm_w": _norm_scale(cell.outnorm), "skip": _np(layer.learnable_skip),
        "W_down": _t(layer.proj_down.weight), "b_down": _np(layer.proj_down.bias)}
    if cell.outnorm.bias is not None:
        raise ConversionError(f"{name}: mLSTM outnorm with a bias is not supported")
    return emit("MLSTM", name, [x], {"size": d, "inner": inner, "heads": nh, "block": bs,
                                     "kernel": k, "eps": float(cell.outnorm.eps)}, weights, d)


def slstm_layer(emit: Emit, layer, x: str, name: str) -> str:
    cfg = layer.config
    cell = layer.slstm_cell
    d, nh = cfg.embedding_dim, cfg.num_heads
    dh = d // nh
    if type(cell).__name__ != "sLSTMCell_vanilla":
        raise ConversionError(f"{name}: sLSTM cell {type(cell).__name__}; build the model with "
                              "sLSTMLayerConfig(backend='vanilla') (its weights are the same)")
    if cell.config.function != "slstm" or cell.config.num_gates != 4:
        raise ConversionError(f"{name}: sLSTM cell function {cell.config.function!r} is not "
                              "supported (only 'slstm')")
    k, conv = _conv(layer.conv1d, d, name) if cfg.conv1d_kernel_size > 0 else (0, {})
    # sLSTMLayer feeds i from its `fgate` module and f from its `igate` module (as written)
    w_x = np.stack([_headwise(layer.fgate), _headwise(layer.igate), _headwise(layer.zgate),
                    _headwise(layer.ogate)])
    r = _np(cell._recurrent_kernel_).reshape(nh, 4 * dh, dh).transpose(0, 2, 1)
    if layer.group_norm.bias is not None:
        raise ConversionError(f"{name}: sLSTM group norm with a bias is not supported")
    weights = {"W_x": w_x, "R": np.ascontiguousarray(r), "bias": _np(cell._bias_).reshape(-1),
               "norm_w": _norm_scale(layer.group_norm), **conv}
    return emit("SLSTM", name, [x], {"size": d, "heads": nh, "kernel": k,
                                     "eps": float(layer.group_norm.eps)}, weights, d)


_ACTS = {"gelu": ["gelu"], "relu": ["relu"], "sigmoid": ["sigmoid"]}


def _feedforward(emit: Emit, ffn, x: str, name: str, d: int) -> str:
    act = ffn.config.act_fn
    if act not in _ACTS and act != "swish":
        raise ConversionError(f"{name}: feed-forward act_fn {act!r} is not supported "
                              f"(supported: gelu, relu, sigmoid, swish)")
    p = ffn.config._proj_up_dim
    w_up, b_up = _t(ffn.proj_up.weight), _np(ffn.proj_up.bias)
    gate = emit("Linear", f"{name}.proj_up.gate", [x], {"in_features": d, "out_features": p},
                {"W": np.ascontiguousarray(w_up[:, :p]), "bias": None if b_up is None else b_up[:p]}, p)
    up = emit("Linear", f"{name}.proj_up.up", [x], {"in_features": d, "out_features": p},
              {"W": np.ascontiguousarray(w_up[:, p:]), "bias": None if b_up is None else b_up[p:]}, p)
    if act == "swish":  # silu(g) = g * sigmoid(g)
        s = emit("Activation", f"{name}.act", [gate], {"kind": "sigmoid", "size": p}, {}, p)
        a = emit("Mul", f"{name}.act.mul", [gate, s], {"size": p}, {}, p)
    else:
        a = emit("Activation", f"{name}.act", [gate], {"kind": _ACTS[act][0], "size": p}, {}, p)
    g = emit("Mul", f"{name}.gate", [a, up], {"size": p}, {}, p)
    return emit("Linear", f"{name}.proj_down", [g], {"in_features": p, "out_features": d},
                {"W": _t(ffn.proj_down.weight), "bias": _np(ffn.proj_down.bias)}, d)


def block(emit: Emit, blk, x: str, name: str) -> str:
    kind = type(blk.xlstm).__name__
    d = blk.xlstm_norm.ndim
    h = _layer_norm(emit, blk.xlstm_norm, x, f"{name}.xlstm_norm", d)
    if kind == "mLSTMLayer":
        h = mlstm_layer(emit, blk.xlstm, h, f"{name}.xlstm")
    elif kind == "sLSTMLayer":
        h = slstm_layer(emit, blk.xlstm, h, f"{name}.xlstm")
    else:
        raise ConversionError(f"{name}: xLSTM layer {kind} is not supported")
    x = emit("Add", f"{name}.residual", [x, h], {"size": d}, {}, d)
    if blk.ffn is not None:
        h = _layer_norm(emit, blk.ffn_norm, x, f"{name}.ffn_norm", d)
        h = _feedforward(emit, blk.ffn, h, f"{name}.ffn", d)
        x = emit("Add", f"{name}.ffn_residual", [x, h], {"size": d}, {}, d)
    return x


def block_stack(emit: Emit, stack, x: str, name: str) -> str:
    """xLSTMBlockStack.forward: every block, then post_blocks_norm (or nn.Identity)."""
    for i, blk in enumerate(stack.blocks):
        x = block(emit, blk, x, f"{name}.blocks.{i}")
    if type(stack.post_blocks_norm).__name__ == "LayerNorm":
        x = _layer_norm(emit, stack.post_blocks_norm, x, f"{name}.post_blocks_norm",
                        stack.config.embedding_dim)
    return x
