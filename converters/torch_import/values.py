"""What the PyTorch importer knows about each FX value while it walks the program.

Every FX value is one of: a torch tensor (a constant: parameters, buffers and whatever is
computed from them only, folded with torch itself); a `TorchValue` (a per-step value of
the emitted graph); a `StateStack` (`h_n`/`c_n` of a recurrent op) or a `CellC` (the `c`
an LSTM cell returned). Ints and other Python values pass through as they are.
"""
from __future__ import annotations

from dataclasses import dataclass, field

ROLE_NAMES = {"T": "time", "B": "batch", "F": "feature", "H": "attention head"}


@dataclass(frozen=True)
class TorchValue:
    """A per-step value of the emitted graph as the torch graph sees it: the role of each
    torch dimension ('T' time, 'B' batch, 'F' features, or a symbol '?..' still to be
    resolved) and either the whole sequence (`t is None`) or the value at one time step t.
    (The ONNX importer's counterpart is `OnnxValue`.)"""
    vid: str                  # IR value id
    size: int                 # feature size (1 when the feature dim was squeezed away)
    dims: tuple               # role symbol per torch dim
    shape: tuple              # torch shape in the exported graph
    t: int | None             # None: the whole sequence; k: only time step k


@dataclass
class StateStack:
    """`h_n` or `c_n` of a recurrent op: one entry per (layer, direction)."""
    kind: str                             # 'h' or 'c'
    entries: list                         # [(vid or None, reverse, size)]
    dims: tuple                           # ('L', batch..., feature)
    shape: tuple
    module: str


@dataclass(frozen=True)
class CellC:
    """The `c` state returned by an LSTM cell call at step t."""
    key: tuple
    t: int


@dataclass
class CellLoop:
    """One cell (nn.LSTMCell/GRUCell/RNNCell) called once per time step in a Python loop,
    which export unrolled: folded into one recurrent IR node as the calls come in."""
    node: dict
    out: str
    t_first: int
    t_last: int
    direction: int = 0        # 0 unknown (one call so far), +1 forward, -1 reverse
    where: str = ""


@dataclass
class OutputSpec:
    """One model output: where it is in torch's outputs and in the IR, and its layout."""
    index: int                # position in the flattened torch outputs
    label: str
    vid: str
    kind: str                 # 'seq' or 'last'
    dims: tuple               # resolved roles of the torch output's dims ('T','B','F','1')
    name: str = ""            # graph value name, filled at emission
    prefix_ok: bool = True    # rows before the last are prefix results (no reverse layer)


@dataclass
class TorchSpec:
    """What verification needs to feed torch and compare: layouts and output kinds."""
    input_dims: tuple         # e.g. ('B', 'T', 'F'), ('T', 'B', 'F'), ('T', 'F'); ids ('B', 'T')
    example_shape: tuple
    input_size: int
    outputs: list = field(default_factory=list)
    streamable: bool = True
    input_dtype: str = "float32"  # "int64"/"int32": token ids (input_dims then have no 'F')


def has_abstract(v) -> bool:
    """Does v (or a list/tuple inside it) hold anything that is not a constant?"""
    if isinstance(v, (TorchValue, StateStack, CellC)):
        return True
    if isinstance(v, (list, tuple)):
        return any(has_abstract(x) for x in v)
    return False
