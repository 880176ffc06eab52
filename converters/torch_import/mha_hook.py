"""nn.MultiheadAttention inside a module: traced as one opaque op, converted by weights.

torch.export would trace nn.MultiheadAttention into its fused kernels, whose q/k/v
projections and head reshapes differ between torch versions and fast paths. Within
`mha_leaves(m)` every nn.MultiheadAttention of `m` is called through the custom op
`lstm_infer::multihead_attention(q, k, v, attn_mask, need_weights, is_causal, key)`, which
runs the module's own forward (so the module computes exactly as before, verification
included); the walker hands that node to `ops/attention.py`, which reads the module's
weights and the mask (a constant of the traced length) and emits q/k/v Linear nodes,
CausalAttention (or the run()-only SequenceAttention) and out_proj. Same approach as
`xlstm_hook.py`.
"""
from __future__ import annotations

from ..errors import ConversionError
from .fx import torch_module
from .leaf_hooks import leaf_modules

_MODULES: dict[int, tuple] = {}   # key -> (nn.MultiheadAttention, its path)
_OP = None


def _custom_op():
    """Define lstm_infer::multihead_attention once (on the first conversion that needs it)."""
    global _OP
    if _OP is None:
        torch = torch_module()

        @torch.library.custom_op("lstm_infer::multihead_attention", mutates_args=(),
                                 schema="(Tensor q, Tensor k, Tensor v, Tensor? attn_mask, "
                                        "bool need_weights, bool is_causal, int key) -> Tensor")
        def multihead_attention(q, k, v, attn_mask, need_weights, is_causal, key):
            m = _MODULES[key][0]
            out = type(m).forward(m, q, k, v, need_weights=need_weights, attn_mask=attn_mask,
                                  is_causal=is_causal)[0]
            return out.clone()

        @multihead_attention.register_fake
        def _(q, k, v, attn_mask, need_weights, is_causal, key):
            return torch.empty_like(q)  # (L, N, E) / (N, L, E): the query's shape

        _OP = multihead_attention
    return _OP


def _hooked_forward(fn, key: int, path: str):
    def forward(query, key_, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if key_padding_mask is not None:
            raise ConversionError(
                f"nn.MultiheadAttention {path!r} is called with a key_padding_mask: a padding "
                "mask depends on the batch, which lstm-infer does not express (pass sequence "
                "lengths to run() instead and drop the mask)")
        # The attention weights are not computed: a model that reads them fails to trace.
        return fn(query, key_, value, attn_mask, bool(need_weights), bool(is_causal), key), None
    return forward


def mha_leaves(module):
    """Within: every nn.MultiheadAttention of `module` runs as lstm_infer::multihead_attention."""
    torch = torch_module()
    return leaf_modules(module, lambda m: isinstance(m, torch.nn.MultiheadAttention), _MODULES,
                        "attention", lambda key, path: _hooked_forward(_custom_op(), key, path))


def attention_of(key: int):
    """(nn.MultiheadAttention, its path) registered under `key` by mha_leaves, None outside it."""
    return _MODULES.get(key)
