"""The runtime's ops, one module each (base.py says what a module provides).

Every module of this package that defines `OPS` (a tuple of OpDef) is registered here,
so adding an op is: its module, its dispatch line in kernels/interpreter.py (for ops
with a step kernel), its row in docs/FORMAT.md, and its test file.
"""
from __future__ import annotations

import importlib
import pkgutil

from .base import OpDef

_HELPERS = ("base", "recurrent")  # shared code, no ops


def _discover() -> dict[str, OpDef]:
    found: dict[str, OpDef] = {}
    opcodes: dict[int, str] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name in _HELPERS:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        code = getattr(module, "OPCODE", None)
        if code is not None:  # one opcode per module: its step kernel
            assert code not in opcodes, f"opcode {code} of {info.name} is taken by {opcodes[code]}"
            opcodes[code] = info.name
        for op in getattr(module, "OPS", ()):
            assert op.name not in found, f"op {op.name} is defined twice"
            found[op.name] = op
    return found


OPS: dict[str, OpDef] = _discover()


def describe(node, out_size: int) -> str:
    """One line for `Model.summary` / `lstm-infer inspect`: what the node computes."""
    op = OPS[node.op]
    desc = op.describe(node, out_size) if op.describe else f"{node.op} {out_size}"
    if op.recurrent and node.attrs.get("reverse"):
        desc += " reverse"
    return desc
