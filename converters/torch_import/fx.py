"""Reading a `torch.export` program: names, arguments and shapes of its FX nodes, and the
module each node came from (for error messages and IR node names). torch is imported
only when a function needs it, so the package imports without it."""
from __future__ import annotations

import numpy as np


def torch_module():
    """The torch module, imported on first use."""
    import torch
    return torch


def to_numpy(t) -> np.ndarray:
    """A torch tensor as a contiguous float32 numpy array (the IR stores float32)."""
    return t.detach().cpu().to(dtype=torch_module().float32).contiguous().numpy()


def is_tensor(v) -> bool:
    return isinstance(v, torch_module().Tensor)


def op_name(target) -> str:
    """`aten.lstm.input` for an OpOverload, else the callable's name."""
    if isinstance(target, str):
        return target
    name = getattr(target, "name", None)
    if callable(name):
        try:
            return name().replace("::", ".")
        except Exception:
            pass
    return getattr(target, "__name__", str(target))


def packet_name(target) -> str:
    """The op's name without its overload (`lstm` for `aten.lstm.input`): the registry key."""
    p = getattr(target, "overloadpacket", None)
    return p.__name__ if p is not None else getattr(target, "__name__", str(target))


def bind_args(target, args, kwargs) -> dict:
    """Arguments by schema name with defaults filled in."""
    out = {}
    pos = 0
    for a in target._schema.arguments:
        if not a.kwarg_only and pos < len(args):
            out[a.name] = args[pos]
            pos += 1
        elif a.name in kwargs:
            out[a.name] = kwargs[a.name]
        elif a.has_default_value():
            out[a.name] = a.default_value
        else:
            out[a.name] = None
    return out


def size_hint(v) -> int:
    """A size as an int: symbolic sizes (dynamic shapes) by the value they were traced with."""
    torch = torch_module()
    if isinstance(v, int):
        return v
    if isinstance(v, torch.SymInt):
        try:
            from torch.fx.experimental.symbolic_shapes import hint_int
            return int(hint_int(v))
        except Exception:
            return int(v.node.hint)
    return int(v)


def fx_shape(node) -> tuple:
    """The traced shape of an FX node's value, () when it is not a tensor."""
    v = node.meta.get("val")
    return tuple(size_hint(s) for s in v.shape) if hasattr(v, "shape") else ()


def module_of(node) -> tuple[str, str]:
    """(path, class name) of the innermost module that produced an FX node."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    path, cls = list(stack.values())[-1]
    if not isinstance(cls, str):
        cls = f"{cls.__module__}.{cls.__qualname__}"
    return path, cls
