"""Symbolic shapes and per-step tensors for the ONNX importer.

Two ideas carry the whole converter:

* `Dim`: a symbolic size `c * T^a * B^b` (T = time steps, B = batch). Shape bookkeeping
  (Shape -> Gather -> Mul -> Concat -> Reshape) is evaluated on these, so it folds away.
  Files exported with fixed sizes give *hints* (the file's T and B) so a baked-in size
  such as `Reshape(x, [1, 10, 8])` still matches the symbolic time axis.

* `Dyn`: an ONNX tensor that varies per time step. Each ONNX axis carries *tokens*
  (major to minor) saying what it spans: 'T' (time), 'R' (time in reverse order: what a
  Slice with step -1 over the whole time axis makes), 'B' (batch) and 'F' (a feature
  part, fixed size). `idx` has one dimension per axis, the size of that axis' feature part, and
  holds for each per-step element its position in the flat IR value that stores it (-1:
  a zero from padding). Pure data movement (Transpose, Slice, Gather, Split, Pad,
  Reshape, Squeeze, Concat...) then only rewrites `idx` and emits nothing; an IR `Gather`
  is emitted only when an op needs the elements contiguous in ONNX row-major order.
  The same machinery carries symbolic constants (`kind="const"`, idx into a flat array)
  and graph inputs that hold recurrent state (`kind="ids"`, idx = element ids).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .errors import AxisError, SymError  # re-exported: the ONNX modules import them from here

__all__ = ["Dim", "Dyn", "SymError", "AxisError", "HINTS", "dim_of", "dims_product"]

HINTS: dict[str, int | None] = {"T": None, "B": None}  # the file's fixed sizes, per conversion


class Dim:
    """c * T^t * B^b with integer c; arithmetic returns a plain int when no symbol is left."""
    __slots__ = ("c", "t", "b")

    def __init__(self, c: int = 1, t: int = 0, b: int = 0):
        self.c, self.t, self.b = int(c), int(t), int(b)

    @staticmethod
    def make(c: int, t: int, b: int):
        return int(c) if t == 0 and b == 0 else Dim(c, t, b)

    @staticmethod
    def of(x) -> "Dim":
        return x if isinstance(x, Dim) else Dim(int(x))

    def concrete(self) -> int:
        ht, hb = HINTS.get("T"), HINTS.get("B")
        if (self.t and ht is None) or (self.b and hb is None):
            raise SymError(f"size {self!r} depends on the sequence length or batch size")
        return self.c * (ht or 1) ** self.t * (hb or 1) ** self.b

    def __mul__(self, o):
        if isinstance(o, (float, np.floating)):
            return self.concrete() * o
        o = Dim.of(o)
        return Dim.make(self.c * o.c, self.t + o.t, self.b + o.b)

    __rmul__ = __mul__

    def __floordiv__(self, o):
        o = Dim.of(o)
        if o.c != 0 and self.c % o.c == 0 and self.t >= o.t and self.b >= o.b:
            return Dim.make(self.c // o.c, self.t - o.t, self.b - o.b)
        return concrete(self) // concrete(o)

    def __rfloordiv__(self, o):
        return Dim.of(o).__floordiv__(self)

    __truediv__ = __floordiv__
    __rtruediv__ = __rfloordiv__

    def __add__(self, o):
        o = Dim.of(o)
        if (self.t, self.b) == (o.t, o.b):
            return Dim.make(self.c + o.c, self.t, self.b)
        return self.concrete() + o.concrete()

    __radd__ = __add__

    def __neg__(self):
        return Dim(-self.c, self.t, self.b)

    def __sub__(self, o):
        return self + (-Dim.of(o))

    def __rsub__(self, o):
        return Dim.of(o) + (-self)

    def __mod__(self, o):
        if isinstance(o, (int, np.integer)) and self.c % int(o) == 0:
            return 0
        return self.concrete() % int(o)

    def __eq__(self, o):
        if isinstance(o, Dim):
            return (self.c, self.t, self.b) == (o.c, o.t, o.b)
        if isinstance(o, (int, np.integer)):
            return False if self.c != 0 else int(o) == 0
        return NotImplemented

    def __ne__(self, o):
        r = self.__eq__(o)
        return r if r is NotImplemented else not r

    def _cmp(self, o, op):
        return op(self.concrete(), concrete(o))

    def __lt__(self, o):
        return self._cmp(o, lambda a, b: a < b)

    def __le__(self, o):
        return self._cmp(o, lambda a, b: a <= b)

    def __gt__(self, o):
        return self._cmp(o, lambda a, b: a > b)

    def __ge__(self, o):
        return self._cmp(o, lambda a, b: a >= b)

    def __hash__(self):
        return hash((self.c, self.t, self.b))

    def __int__(self):
        return self.concrete()

    def __repr__(self):
        parts = [] if self.c == 1 and (self.t or self.b) else [str(self.c)]
        parts += ["T"] * self.t + ["B"] * self.b
        return "*".join(parts)


def concrete(x) -> int:
    return x.concrete() if isinstance(x, Dim) else int(x)


def is_sym(x) -> bool:
    return isinstance(x, Dim)


def dims_product(dims) -> Any:
    p: Any = 1
    for d in dims:
        p = p * d if not isinstance(p, int) or isinstance(d, Dim) else p * int(d)
    return p


TOKEN_DIM = {"T": Dim(1, 1, 0), "R": Dim(1, 1, 0), "B": Dim(1, 0, 1)}
TOKEN_WORD = {"T": "time", "R": "time (reversed)", "B": "batch"}


def dim_of(tokens: tuple, fsize: int):
    """The size of one axis from its tokens and feature-part size."""
    d: Any = int(fsize)
    for tok in tokens:
        if tok in TOKEN_DIM:
            d = TOKEN_DIM[tok] * d
    return d


def _ftok(tokens: tuple, fsize: int) -> tuple:
    """Axis tokens after its feature part changed size: keep 'F' iff the size is > 1."""
    sym = [t for t in tokens if t != "F"]
    if fsize == 1:
        return tuple(sym)
    if "F" in tokens:
        return tokens
    return tuple(sym) + ("F",)


@dataclass
class Dyn:
    """A per-step tensor (see module doc). `readout` (data only): None while the tensor has
    a time axis; else one code per element of the IR value, saying at which time step the
    ONNX value is found in our per-step output: 0 any step (time-constant), 1 the last step,
    2 the last valid step of each sequence (lengths - 1), 3 the first step."""
    kind: str                 # "data" | "const" | "ids"
    ref: Any                  # data: IR value name; const: flat np.ndarray; ids: id space name
    idx: np.ndarray
    axes: list
    readout: np.ndarray | None = None

    @property
    def rank(self) -> int:
        return len(self.axes)

    @property
    def fshape(self) -> tuple:
        return tuple(self.idx.shape)

    def dims(self) -> list:
        return [dim_of(tok, n) for tok, n in zip(self.axes, self.idx.shape)]

    def has(self, tok: str) -> bool:
        return any(tok in a for a in self.axes)

    def axis_of(self, tok: str) -> int | None:
        for k, a in enumerate(self.axes):
            if tok in a:
                return k
        return None

    def with_(self, idx: np.ndarray, axes: list, **kw) -> "Dyn":
        assert idx.ndim == len(axes)
        return replace(self, idx=np.asarray(idx, dtype=np.int64), axes=list(axes), **kw)

    def is_feature_axis(self, k: int) -> bool:
        return all(t == "F" for t in self.axes[k])

    def describe(self) -> str:
        def one(tok, n):
            parts = [{"F": str(n), "R": "rev(T)"}.get(t, t) for t in tok]
            return "*".join(parts) or "1"
        return "(" + ", ".join(one(t, n) for t, n in zip(self.axes, self.idx.shape)) + ")"


def norm_axis(k: int, rank: int) -> int:
    k = int(k)
    if not -rank <= k < max(rank, 1):
        raise SymError(f"axis {k} out of range for rank {rank}")
    return k + rank if k < 0 else k


# ---- data movement on Dyn ------------------------------------------------------------
def transpose(d: Dyn, perm: list[int] | None) -> Dyn:
    perm = list(range(d.rank))[::-1] if not perm else [int(p) for p in perm]
    return d.with_(d.idx.transpose(perm), [d.axes[p] for p in perm])


def unsqueeze(d: Dyn, axes: list[int]) -> Dyn:
    out_rank = d.rank + len(axes)
    axes = sorted(norm_axis(a, out_rank) for a in axes)
    idx, toks = d.idx, list(d.axes)
    for a in axes:
        idx = np.expand_dims(idx, a)
        toks.insert(a, ())
    return d.with_(idx, toks)


def squeeze(d: Dyn, axes: list[int] | None) -> Dyn:
    if axes is None:
        axes = [k for k, t in enumerate(d.axes) if t == () or
                (t in (("B",), ("T",)) and HINTS.get(t[0]) == 1)]
    axes = sorted({norm_axis(a, d.rank) for a in axes})
    for a in axes:
        tok = d.axes[a]
        if tok == ():
            continue
        if tok == ("B",) and HINTS.get("B") == 1:
            continue  # a file exported with batch 1 drops its batch axis: we run batch-free
        raise AxisError(f"cannot squeeze axis {a} of size {dim_of(tok, d.idx.shape[a])}")
    keep = [k for k in range(d.rank) if k not in axes]
    return d.with_(d.idx.reshape([d.idx.shape[k] for k in keep]), [d.axes[k] for k in keep])


def reshape(d: Dyn, target: list) -> Dyn:
    """Reshape to `target` sizes (ints or Dims; 0 and -1 already resolved)."""
    factors: list[list] = []  # [kind, size]: kind 'T'/'B'/'F'
    for tok, n in zip(d.axes, d.idx.shape):
        for t in tok:
            factors.append([t, int(n)] if t == "F" else [t, None])
    new_axes, new_f = [], []
    pos = 0
    for want in target:
        rem = Dim.of(want)
        toks: list[str] = []
        fsize = 1
        while True:
            if rem.c == 1 and rem.t == 0 and rem.b == 0:
                break
            if pos >= len(factors):
                raise AxisError(f"cannot reshape {d.describe()} to {list(target)}")
            kind, size = factors[pos]
            if kind in ("T", "R", "B"):
                is_t = kind != "B"   # 'R' is the time axis in reverse order
                have = rem.t if is_t else rem.b
                if not have:
                    hint = HINTS.get("T" if is_t else "B")
                    if rem.t == 0 and rem.b == 0 and hint and rem.c % hint == 0:
                        rem = Dim(rem.c // hint, rem.t + is_t, rem.b + (not is_t))
                    else:
                        raise AxisError(f"cannot reshape {d.describe()} to {list(target)}: "
                                        f"the {'time' if is_t else 'batch'} axis does not fit")
                rem = Dim(rem.c, rem.t - is_t, rem.b - (not is_t))
                toks.append(kind)
                pos += 1
                continue
            if rem.c % size == 0:
                rem = Dim(rem.c // size, rem.t, rem.b)
                take = size
                pos += 1
            elif size % rem.c == 0 and rem.t == 0 and rem.b == 0:
                take = rem.c
                factors[pos][1] = size // rem.c
                rem = Dim(1)
            else:
                raise AxisError(f"cannot reshape {d.describe()} to {list(target)}")
            if toks and toks[-1] == "F":
                fsize *= take
            else:
                if "F" in toks:
                    raise AxisError(f"reshape to {list(target)} interleaves time/batch with features")
                toks.append("F")
                fsize = take
        new_axes.append(tuple(toks))
        new_f.append(fsize)
    if pos != len(factors):
        raise AxisError(f"cannot reshape {d.describe()} to {list(target)}")
    return d.with_(d.idx.reshape(new_f), [_ftok(t, n) for t, n in zip(new_axes, new_f)])


def resolve_reshape_target(d_dims: list, shape: list, allowzero: bool = False) -> list:
    out = []
    neg = None
    for k, s in enumerate(shape):
        if not isinstance(s, Dim) and int(s) == 0 and not allowzero:
            out.append(d_dims[k])
        elif not isinstance(s, Dim) and int(s) == -1:
            neg = k
            out.append(None)
        else:
            out.append(s)
    if neg is not None:
        total = dims_product(d_dims)
        rest = dims_product([o for o in out if o is not None])
        out[neg] = Dim.of(total) // rest if isinstance(total, Dim) or isinstance(rest, Dim) \
            else int(total) // int(rest)
    return out


def feature_slice(d: Dyn, axis: int, sl: np.ndarray) -> Dyn:
    """Select positions `sl` (int array) along a feature axis."""
    idx = np.take(d.idx, sl, axis=axis)
    axes = list(d.axes)
    axes[axis] = _ftok(axes[axis], idx.shape[axis])
    return d.with_(idx, axes)


def take(d: Dyn, axis: int, indices: np.ndarray) -> Dyn:
    """ONNX Gather with constant indices on a feature axis (indices may be any rank)."""
    n = d.idx.shape[axis]
    ind = np.asarray(indices, dtype=np.int64)
    if ((ind < -n) | (ind >= n)).any():
        raise SymError(f"Gather index out of range for axis of size {n}")
    ind = np.where(ind < 0, ind + n, ind)
    idx = np.take(d.idx, ind, axis=axis)
    axes = list(d.axes[:axis]) + [_ftok(("F",), s) for s in ind.shape] + list(d.axes[axis + 1:])
    return d.with_(idx, axes)


def drop_time(d: Dyn, axis: int, keep_axis: bool) -> Dyn:
    """Select the last time step: the time axis goes (or becomes size 1)."""
    if d.axes[axis] == ("R",):
        raise AxisError(f"selecting a time step of {d.describe()}, whose time axis is reversed "
                        "(Slice with step -1): only a step of the time axis in order can be "
                        "selected (the last one)")
    if d.axes[axis] != ("T",):
        raise AxisError(f"selecting a time step on axis {axis} {d.describe()} that mixes time with "
                        "other axes")
    if keep_axis:
        axes = list(d.axes)
        axes[axis] = ()
        return d.with_(d.idx, axes)
    return d.with_(d.idx.reshape([n for k, n in enumerate(d.idx.shape) if k != axis]),
                   [a for k, a in enumerate(d.axes) if k != axis])


def reverse_time(d: Dyn, axis: int) -> Dyn:
    """The whole time axis in reverse order (ONNX Slice with step -1 over it): per-step
    values are unchanged, the axis token flips between 'T' and 'R'. Recurrent ops read an
    'R' input as running in the other direction (onnx_ops/recurrent.py); graph outputs must
    be back in time order. A constant over time is its own reversal."""
    tok = d.axes[axis]
    if tok not in (("T",), ("R",)):
        raise AxisError(f"reversing axis {axis} of {d.describe()}: only a time axis of its own "
                        "(not merged with batch or features) can be reversed")
    if d.kind != "data":
        return d
    axes = list(d.axes)
    axes[axis] = ("R",) if tok == ("T",) else ("T",)
    return d.with_(d.idx, axes)


def is_time_reversed(d: Dyn) -> bool:
    return any("R" in tok for tok in d.axes)


def pad(d: Dyn, pads_begin: list[int], pads_end: list[int], mode: str) -> Dyn:
    widths = []
    for k, (p0, p1) in enumerate(zip(pads_begin, pads_end)):
        if (p0 or p1) and not d.is_feature_axis(k):
            raise AxisError(f"Pad on axis {k} of {d.describe()}, which holds time/batch")
        if p0 < 0 or p1 < 0:
            raise SymError("negative pads (cropping) are not supported")
        widths.append((int(p0), int(p1)))
    if mode == "constant":
        idx = np.pad(d.idx, widths, mode="constant", constant_values=-1)
    elif mode in ("reflect", "edge"):
        idx = np.pad(d.idx, widths, mode=mode)
    elif mode == "wrap":
        idx = np.pad(d.idx, widths, mode="wrap")
    else:
        raise SymError(f"Pad mode {mode!r} is not supported")
    return d.with_(idx, [_ftok(t, n) for t, n in zip(d.axes, idx.shape)])


def broadcast_axes(a_axes: list, a_shape: tuple, b_axes: list, b_shape: tuple):
    """Numpy broadcasting of two token shapes; returns (axes, fshape)."""
    r = max(len(a_axes), len(b_axes))
    A = [()] * (r - len(a_axes)) + list(a_axes)
    As = (1,) * (r - len(a_shape)) + tuple(a_shape)
    Bx = [()] * (r - len(b_axes)) + list(b_axes)
    Bs = (1,) * (r - len(b_shape)) + tuple(b_shape)
    axes, shape = [], []
    for ta, na, tb, nb in zip(A, As, Bx, Bs):
        if ta == tb and na == nb:
            axes.append(ta)
            shape.append(na)
            continue
        if ta == () or tb == ():
            axes.append(ta or tb)
            shape.append(max(na, nb))
            continue
        if ("R" in ta) != ("R" in tb) and ("T" in ta + tb):
            raise AxisError("cannot combine values in time order with values whose time axis is "
                            "reversed (Slice with step -1); only a recurrent layer may read "
                            "reversed values, and its output must be reversed back")
        raise AxisError(f"cannot broadcast {dim_of(ta, na)} against {dim_of(tb, nb)}")
    return axes, tuple(shape)


def align_idx(d: Dyn, axes: list, fshape: tuple) -> np.ndarray:
    """d.idx broadcast to a (broadcast-compatible) target shape."""
    idx = d.idx.reshape((1,) * (len(fshape) - d.idx.ndim) + d.idx.shape)
    return np.broadcast_to(idx, fshape)
