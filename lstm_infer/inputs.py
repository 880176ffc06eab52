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
