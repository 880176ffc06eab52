"""One converter per aten op, registered by name (`.registry`), one module per family:
linear (Linear, matmul, addmm), norm (LayerNorm), activations, arithmetic, shape (view,
transpose, slice, ... bookkeeping), time (selecting and gathering time steps, cat),
passthrough (dropout, copies), embedding (nn.Embedding on token ids), recurrent (nn.LSTM/GRU/RNN) and cells (cell loops).

A converter is `fn(ctx, target, args)`: `ctx` the `Context` (emits IR nodes and tracks
axis roles), `target` the aten OpOverload, `args` its arguments by schema name, each a
torch tensor (a constant) or a value from `values.py`. It returns the node's value (a
tuple for ops with several outputs). Ops whose inputs are all constants never reach a
converter: the walk runs them with torch.
"""
from __future__ import annotations

from . import (activations, arithmetic, attention, cells, embedding, linear, norm,  # noqa: F401  (registration)
               passthrough, recurrent, shape, time, time_pool, xlstm)
from .registry import HANDLERS, op

__all__ = ["HANDLERS", "op", "SUPPORTED"]

SUPPORTED = (
    "modules: nn.LSTM (batch_first, num_layers, bidirectional, proj_size, bias, dropout), "
    "nn.GRU, nn.RNN (tanh/relu), nn.LSTMCell/nn.GRUCell/nn.RNNCell in a Python loop over time, "
    "nn.Embedding on integer token ids (the model input), nn.Linear, nn.LayerNorm (last dim), nn.Dropout, nn.Identity, nn.ReLU, nn.Tanh, nn.Sigmoid, "
    "nn.GELU (incl. approximate='tanh'), nn.LeakyReLU, nn.ELU, nn.Softplus, nn.SiLU, "
    "nn.Softmax/nn.LogSoftmax (last dim); tensor ops: + - * / with a constant or between two "
    "per-step values, torch.cat on the feature dim, torch.stack/cat over time of a cell loop, "
    "out[:, -1] / h_n[-1] (last step), mean/sum/amax/amin/max/min over time or the features, "
    "attention pooling (softmax(score, dim=time) * h).sum(time) or weights @ h, slicing features, transpose/permute/squeeze/unsqueeze/"
    "view bookkeeping, split/chunk of the features; causal self-attention: nn.MultiheadAttention "
    "(batch_first or not, causal or banded attn_mask, need_weights ignored) and "
    "F.scaled_dot_product_attention(is_causal=True or a banded mask) on heads split with "
    "view(..., H, D).transpose, a last-step query over every step, non-causal attention run() "
    "only; xlstm package: xLSTMBlockStack (mLSTM and sLSTM blocks, read by class "
    "and weights, also inside a module with layers around it)")
