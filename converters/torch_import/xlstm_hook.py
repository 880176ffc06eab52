"""xLSTM stacks inside a module: traced as one opaque op, converted by class.

torch.export would trace an `xlstm.xLSTMBlockStack` through its parallel forms (a
(S, S) decay matrix per head), which have no per-step reading. Within `xlstm_leaves(m)`
every stack in `m` (m itself included) is called through the custom op
`lstm_infer::xlstm_stack(x, key)`: it runs the stack's own forward (so the module
computes exactly as before, verification included), and export records one node that the
walker hands to `ops/xlstm.py`, which emits the stack's blocks from its weights
(xlstm_layers.py). Layers around the stack (an input Linear, an output head) trace as usual.
"""
from __future__ import annotations

from .fx import torch_module
from .leaf_hooks import leaf_modules

_STACKS: dict[int, tuple] = {}   # key -> (stack module, its path in the converted module)
_OP = None


def is_xlstm_stack(m) -> bool:
    cls = type(m)
    return cls.__name__ == "xLSTMBlockStack" and cls.__module__.startswith("xlstm")


def _custom_op():
    """Define lstm_infer::xlstm_stack once (on the first conversion that needs it)."""
    global _OP
    if _OP is None:
        torch = torch_module()

        @torch.library.custom_op("lstm_infer::xlstm_stack", mutates_args=(),
                                 schema="(Tensor x, int key) -> Tensor")
        def xlstm_stack(x, key):
            stack = _STACKS[key][0]
            return type(stack).forward(stack, x).clone()

        @xlstm_stack.register_fake
        def _(x, key):
            return torch.empty_like(x)

        _OP = xlstm_stack
    return _OP


def xlstm_leaves(module):
    """Within: every xLSTMBlockStack of `module` runs as the op lstm_infer::xlstm_stack."""
    def forward(key, path):
        fn = _custom_op()
        return lambda x, **kw: fn(x, key)
    return leaf_modules(module, is_xlstm_stack, _STACKS, "xlstm", forward)


def stack_of(key: int):
    """(stack module, its path) registered under `key` by xlstm_leaves, None outside it."""
    return _STACKS.get(key)
