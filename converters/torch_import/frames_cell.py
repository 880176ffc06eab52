"""The ConvLSTM cell as users write it in PyTorch, recognised op by op while the frame walk
(`frames.py`) interprets the unrolled loop, and folded into one `ConvLSTM` IR node:

    z = conv2d(cat([x, h], dim=1), weight (4F, C+F, kh, kw), bias, padding=k//2)
    a, b, c, d = split(z, F, dim=1)   (or chunk(z, 4, dim=1); any gate order; a constant
                                       scalar or per-channel term added to a block, such as
                                       a forget bias, is folded into the bias)
    i, f, o = sigmoid(.); g = tanh(.)
    c = f * c + i * g;  h = o * tanh(c)

Each value of the cell body is a pending symbolic value (`Gates`, `Part`, `Act`, `Prod`,
`NewC`, `TanhC`) tied to one `CellStep`; the roles of the four parts are read from where
they end up (the part multiplied with the old c is f, the sigmoid next to tanh(c) is o, ...),
which gives the gate order. The product `o * tanh(c)` emits (first step) or continues
(later steps) the node and is the per-step h frame. Anything else applied to a pending
value (a peephole term, a norm, another activation) is refused naming what was found.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ConversionError

PATTERN = ("conv2d(cat([x, h], 1)) -> split/chunk into 4 -> sigmoid(i, f, o), tanh(g) -> "
           "c = f*c + i*g -> h = o*tanh(c)")


@dataclass(frozen=True)
class Frame:
    """A per-step frame (B, C, H, W) in torch, stored channels-last (H, W, C) in the IR;
    t None: the whole sequence (B, T, C, H, W)."""
    vid: str
    C: int
    H: int
    W: int
    t: int | None


@dataclass
class CellLoop:
    """One ConvLSTM cell over the frames: its IR node and where the loop has got to."""
    node: dict
    out: str
    F: int
    H: int
    W: int
    t_first: int
    t_last: int
    order: str = ""           # torch's gate order of the 4 conv output blocks, e.g. "ifog"
    shift: tuple = ()         # the constants added to the blocks (a forget bias), per block


@dataclass
class CellStep:
    """One call of a cell (one frame), from the conv until h."""
    key: tuple
    t: int
    x: Frame
    h_in: object              # a Frame (h of the previous call) or a constant tensor (h0)
    weight: object
    bias: object
    kernel: tuple
    F: int
    c_in: object = None       # a NewC of the previous call or a constant tensor (c0)
    roles: dict = field(default_factory=dict)   # part index -> gate letter
    shift: dict = field(default_factory=dict)   # part index -> constant added to it (F,)


@dataclass(frozen=True)
class XH:
    """cat([x, h], dim=1): the input of a cell's convolution."""
    x: Frame
    h: object


@dataclass(frozen=True)
class Gates:
    step: CellStep


@dataclass(frozen=True)
class Part:
    step: CellStep
    k: int


@dataclass(frozen=True)
class Act:
    step: CellStep
    k: int
    kind: str


@dataclass(frozen=True)
class Prod:
    """f * c_old (kind 'fc') or i * g (kind 'ig')."""
    step: CellStep
    kind: str


@dataclass(frozen=True)
class NewC:
    step: CellStep


@dataclass(frozen=True)
class TanhC:
    step: CellStep


PENDING = (XH, Gates, Part, Act, Prod, NewC, TanhC)


def describe(v) -> str:
    return {XH: "cat([x, h]) of a ConvLSTM cell", Gates: "the gate convolution of a ConvLSTM cell",
            Part: "a gate pre-activation of a ConvLSTM cell", Act: "an activated gate of a ConvLSTM cell",
            Prod: "a product inside a ConvLSTM cell", NewC: "the cell state c of a ConvLSTM cell",
            TanhC: "tanh(c) of a ConvLSTM cell"}.get(type(v), type(v).__name__)


def refuse(where: str, op: str, v) -> ConversionError:
    """The error for an op applied to a pending cell value outside the supported pattern."""
    hint = ""
    if op in ("layer_norm", "group_norm", "batch_norm", "instance_norm", "native_layer_norm",
              "native_group_norm"):
        hint = " (normalisation inside the cell is not supported)"
    elif op in ("add", "sub") and isinstance(v, (Part, Gates)):
        hint = (" (a term added to the gate pre-activations, e.g. a peephole W_c * c, is not "
                "supported)")
    elif op == "mul" and isinstance(v, (Part, Gates)):
        hint = " (a product on gate pre-activations, e.g. a peephole W_c * c, is not supported)"
    return ConversionError(f"ConvLSTM cell: found {op} on {describe(v)}{hint}; lstm-infer folds "
                           f"a ConvLSTM cell of the form {PATTERN}; at {where}")


def reorder(order: str, F: int, a: np.ndarray, axis: int = 0) -> np.ndarray:
    """Blocks of F along `axis` in torch's gate order -> the IR's i, f, g, o."""
    idx = np.concatenate([np.arange(order.index(g) * F, (order.index(g) + 1) * F) for g in "ifgo"])
    return np.take(a, idx, axis=axis)


def folded_bias(bias: np.ndarray | None, shift: dict, F: int) -> np.ndarray | None:
    """The conv bias (4F) plus the constants added to its gate blocks (a forget bias
    `sigmoid(z_f + 1.0)`), in torch's block order."""
    if not shift:
        return bias
    b = np.zeros(4 * F, np.float32) if bias is None else np.array(bias, np.float32)
    for k, v in shift.items():
        b[k * F:(k + 1) * F] += v
    return b


def weights_from_torch(weight: np.ndarray, bias: np.ndarray | None, C: int, order: str) -> dict:
    """The Conv2d weight (4F, C+F, kh, kw) over cat([x, h]) -> W_x (kh, kw, C, 4F) and W_h
    (kh, kw, F, 4F): gate blocks reordered to i, f, g, o, transposed (2, 3, 1, 0) (kernel
    rows, columns, input channel, output column), split at the C input channels."""
    F = weight.shape[0] // 4
    W = reorder(order, F, weight).transpose(2, 3, 1, 0)
    out = {"W_x": np.ascontiguousarray(W[:, :, :C]), "W_h": np.ascontiguousarray(W[:, :, C:])}
    if bias is not None:
        out["bias"] = reorder(order, F, bias)
    return out
