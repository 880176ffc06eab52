"""What the Keras importer knows about a tensor of the Keras graph while it converts."""
from __future__ import annotations

from dataclasses import dataclass
from math import prod

__all__ = ["KValue", "Refused"]


@dataclass(frozen=True)
class KValue:
    """A Keras tensor as an IR value: `shape` is the per-step shape (Keras's shape without
    batch and time), flattened row-major in the IR. `time` is False for a tensor that no
    longer has a time axis (a recurrent layer's last step, `return_sequences=False`): the
    IR still computes it at every step, as the result for the sequence ending there
    (prefix semantics, DESIGN.md), which holds while `prefix_ok` (no reverse-direction
    layer upstream). `ids`: integer token ids (the model input of an Embedding)."""
    vid: str
    shape: tuple
    time: bool = True
    prefix_ok: bool = True
    ids: bool = False

    @property
    def size(self) -> int:
        return int(prod(self.shape)) if self.shape else 1

    def derive(self, vid: str, shape: tuple | None = None) -> "KValue":
        return KValue(vid, self.shape if shape is None else tuple(shape), self.time,
                      self.prefix_ok, False)


@dataclass(frozen=True)
class Refused:
    """A layer output that exists in Keras but not in the IR (an LSTM's returned cell
    state); converting a layer that reads it raises with `reason`."""
    reason: str
