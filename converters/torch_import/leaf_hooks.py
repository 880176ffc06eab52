"""Submodules called through a custom op while a module is exported, for the hooks that
convert a known module by class and weights instead of tracing it (xlstm_hook.py,
mha_hook.py): each matching submodule gets a registry key and a `forward` that calls the
op with that key; leaving the block restores every forward and forgets the keys."""
from __future__ import annotations

import contextlib
import itertools
from typing import Callable

_KEYS = itertools.count(1)  # shared, so keys of different hooks never collide


@contextlib.contextmanager
def leaf_modules(module, matches: Callable, registry: dict, default_path: str,
                 make_forward: Callable):
    """Within: every submodule m of `module` (itself included) with matches(m) is registered
    as registry[key] = (m, path) and runs make_forward(key, path) instead of its forward.
    `make_forward` is called only when something matched (it may define the custom op)."""
    found = [(path or default_path, m) for path, m in module.named_modules() if matches(m)]
    if not found:
        yield
        return
    keys = []
    try:
        for path, m in found:
            key = next(_KEYS)
            keys.append((key, m))
            registry[key] = (m, path)
            m.forward = make_forward(key, path)
        yield
    finally:
        for key, m in keys:
            m.__dict__.pop("forward", None)
            registry.pop(key, None)
