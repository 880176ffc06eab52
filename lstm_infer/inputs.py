"""Input checking shared by run(), step() and friends: dtype, shape, finiteness."""
from __future__ import annotations

from typing import Union

import numpy as np

# What run()/step() return: one array, or a dict name -> array for several outputs.
Output = Union[np.ndarray, dict]
# What a stream does with a NaN/Inf input: refuse it (state untouched) or let it through.
ON_NONFINITE = ("raise", "propagate")


def as_float32(x, what: str) -> np.ndarray:
    """Convert numeric input to float32; anything non-numeric is a TypeError."""
    if isinstance(x, np.ndarray) and x.dtype == np.float32:
        return x
    try:
        arr = np.asarray(x)
    except Exception as e:  # ragged lists and the like
        raise TypeError(f"{what} must be a numeric array, got {type(x).__name__}: {e}") from None
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{what} must be a numeric (float or int) array, got dtype {arr.dtype}")
    return arr.astype(np.float32)


def shape_error(what: str, expected: str, got: tuple) -> ValueError:
    return ValueError(f"{what} has shape {got}, expected {expected}")


def nonfinite_error(what: str) -> ValueError:
    return ValueError(f"{what} contains NaN or Inf; the stream state was left untouched "
                      "(pass on_nonfinite='propagate' to let such values through)")


def pack_inputs(x, inputs: list[tuple[str, int]], what: str):
    """A dict name -> array for a model with several inputs, as the one vector the kernels
    take: the inputs concatenated along the last axis in the graph's order. Anything else
    passes through (it is checked as the concatenated form)."""
    if not isinstance(x, dict):
        return x
    names = [n for n, _ in inputs]
    if set(x) != set(names):
        raise ValueError(f"{what} must have the keys {names} (the model's inputs), got {sorted(x)}")
    parts = []
    for name, size in inputs:
        v = as_float32(x[name], f"{what}[{name!r}]")
        if v.ndim == 0 or v.shape[-1] != size:
            raise shape_error(f"{what}[{name!r}]", f"(..., {size})", v.shape)
        parts.append(v)
    lead = {p.shape[:-1] for p in parts}
    if len(lead) != 1:
        raise ValueError(f"the inputs of {what} differ in their leading (time/batch) shapes: "
                         + ", ".join(f"{n} {p.shape}" for (n, _), p in zip(inputs, parts)))
    return np.concatenate(parts, axis=-1)


def flatten_frames(x: np.ndarray, frame: tuple | None) -> np.ndarray:
    """Steps given in a model's per-step shape (x (..., *frame)) as flat vectors (..., size);
    anything else passes through (checked as the flat form). DESIGN.md: multi-dimensional
    per-step inputs are taken shaped or flattened."""
    if frame is None or len(frame) < 2 or x.ndim < len(frame) or x.shape[x.ndim - len(frame):] != frame:
        return x
    return x.reshape(x.shape[:x.ndim - len(frame)] + (int(np.prod(frame)),))
