"""What an op module provides (`OpDef`), and the helpers every op's spec uses.

An op module (lstm_infer/ops/<op>.py) holds everything about one op:
- its spec: attributes -> input sizes, output size, weights (shapes) and the recurrent
  state it owns (`Signature`); the graph validator checks untrusted files against it;
- its program row: `emit` writes one or more rows of PROG_WIDTH int64 fields, named by
  module constants (`prog[r, W_IH]`, not `prog[r, 6]`);
- its Numba step kernel, which the interpreter (kernels/interpreter.py) calls in one line;
- optionally a whole-sequence kernel for run() (`run_sequence`); without one, run()
  steps the op through its one-node program, so a new op works everywhere at once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..errors import SpecError

PROG_WIDTH = 24  # int64 fields per program row; the widest op (LSTM) uses 22
OPCODE, IN, OUT = 0, 1, 2  # fields every row has: opcode, input offset, output offset
MAX_SIZE = 1 << 20  # largest feature size we accept from a file


@dataclass
class Signature:
    """What a node with given attributes takes and produces, per time step."""
    inputs: list[int]                                 # size of each input value
    output: int                                       # size of the output value
    weights: dict[str, tuple[tuple[int, ...], bool]]  # role -> (shape, required)
    state: dict[str, tuple[int, Optional[str]]] = field(default_factory=dict)
    # state slot -> (size, weight role holding its initial value or None for zeros);
    # streams name it `<node>.<slot>` (Stream.get_state)


@dataclass(frozen=True)
class OpDef:
    """One op of the graph, as the validator, planner, run() and summary see it."""
    name: str
    spec: Callable[[dict], Signature]
    emit: Callable[..., None]  # (emitter, node, input offsets, output offset, state offsets)
    recurrent: bool = False    # owns state carried across steps; may run `reverse`
    matrix_roles: tuple[str, ...] = ()  # weight matrices that may be stored int8
    sequence_only: bool = False  # reads other time steps: whole sequences only (no stream)
    # whole sequences: (plan, node, ins, lengths) -> (T, B, O); a recurrent op's also takes
    # `state` (slot -> (B, size) arrays to start from, updated in place to the final state)
    run_sequence: Optional[Callable] = None
    describe: Optional[Callable[[Any, int], str]] = None  # (node, output size) -> summary
    check: Optional[Callable[[dict, dict, list], None]] = None  # (attrs, weights, in sizes)
    # a tiny instance for `lstm-infer compile` (precompile.py): rng -> (attrs, weights)
    example: Optional[Callable[[Any], tuple[dict, dict]]] = None


def integer(attrs: dict, key: str, lo: int = 1, hi: int = MAX_SIZE, default: Any = None) -> int:
    v = attrs.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise SpecError(f"attribute {key!r} must be an integer in [{lo}, {hi}], got {v!r}")
    return v


def size(n: int) -> int:
    """A derived size (a product of attributes) must stay within MAX_SIZE too."""
    return integer({"n": n}, "n")


def boolean(attrs: dict, key: str, default: bool = False) -> bool:
    v = attrs.get(key, default)
    if not isinstance(v, bool):
        raise SpecError(f"attribute {key!r} must be true/false, got {v!r}")
    return v


def number(attrs: dict, key: str, default: float) -> float:
    v = attrs.get(key, default)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        raise SpecError(f"attribute {key!r} must be a finite number, got {v!r}")
    return float(v)


def choice(attrs: dict, key: str, allowed: tuple[str, ...], what: str) -> str:
    v = attrs.get(key)
    if v not in allowed:
        raise SpecError(f"{what} must be one of {', '.join(allowed)}; got {v!r}")
    return v


def new_row(opcode: int, fields: dict[int, int]) -> list[int]:
    """A program row: `fields` maps a field index (an op module's constant) to its value."""
    row = [0] * PROG_WIDTH
    row[OPCODE] = opcode
    for k, v in fields.items():
        assert 0 < k < PROG_WIDTH, k
        row[k] = int(v)
    return row
