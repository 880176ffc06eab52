"""What the recurrent ops (LSTM, GRU, RNN) share: attribute checks for ONNX's options,
the cell config block their kernels read, and the initial state run() starts from.

Cell config block, CFG_SIZE floats in the weight arena (one per node):
  [0] mode (0: PyTorch defaults, the vectorised fast path; 1: general ONNX semantics)
  [1] clip (0: none)  [2] input_forget  [3] has peephole
  [4 + 3k .. 6 + 3k] gate activation k: code (kernels/activations.GATE_ACT_CODES), alpha, beta

Their whole-sequence kernels (run()) get the input projection of every step as one
matrix product (linear.project), so they only add the recurrent term and apply the same
cell functions as the step kernels. Layout: time-major (T, B, F) float32; `out` is zeroed
by the caller, since steps at or past lengths[b] are not written (ONNX sequence_lens).
When every sequence has the full length, they run time-outer and batch-inner so that one
matmat_acc per step multiplies all B states by W_hh (each weight read once per step, not
B times); per sequence the arithmetic is the same as the one-sequence loop.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..kernels import KERNEL
from ..kernels.activations import GATE_ACT_CODES
from ..kernels.linalg import WIDE_VECTORS, pack_panels
from .base import SpecError, boolean, number

CFG_SIZE = 16
GATE_ACTIVATIONS = tuple(GATE_ACT_CODES)
DEFAULT_GATE_ACTIVATIONS = {"LSTM": ("sigmoid", "tanh", "tanh"), "GRU": ("sigmoid", "tanh"),
                            "RNN": ("tanh",)}


def check_options(a: dict, n_acts: int) -> None:
    """`reverse`, ONNX `activations` (n_acts of them) and `clip`."""
    boolean(a, "reverse")
    acts = a.get("activations")
    if acts is not None:
        if not isinstance(acts, list) or len(acts) != n_acts:
            raise SpecError(f"attribute 'activations' must list {n_acts} functions, got {acts!r}")
        for spec in acts:
            if not isinstance(spec, dict) or spec.get("kind") not in GATE_ACTIVATIONS:
                raise SpecError(f"gate activation must be one of {', '.join(GATE_ACTIVATIONS)}; "
                                f"got {spec!r}")
            number(spec, "alpha", 0.0)
            number(spec, "beta", 0.0)
    if a.get("clip") is not None and number(a, "clip", 0.0) <= 0:
        raise SpecError("attribute 'clip' must be positive")


def cell_config(node) -> np.ndarray:
    """The CFG_SIZE config block of a recurrent node (layout in the module docstring)."""
    a = node.attrs
    cfg = np.zeros(CFG_SIZE, np.float32)
    acts = a.get("activations")
    if node.op == "RNN" and not acts and a.get("nonlinearity", "tanh") == "relu":
        acts = [{"kind": "relu"}]
    general = bool(acts) or bool(a.get("clip")) or bool(a.get("input_forget")) or "peephole" in node.weights
    cfg[0] = 1.0 if general else 0.0
    cfg[1] = float(a.get("clip") or 0.0)
    cfg[2] = 1.0 if a.get("input_forget") else 0.0
    cfg[3] = 1.0 if "peephole" in node.weights else 0.0
    for k, kind in enumerate(DEFAULT_GATE_ACTIVATIONS[node.op]):
        spec = acts[k] if acts else {"kind": kind}
        cfg[4 + 3 * k] = GATE_ACT_CODES[spec["kind"]]
        cfg[5 + 3 * k] = float(spec.get("alpha", 0.0))
        cfg[6 + 3 * k] = float(spec.get("beta", 0.0))
    return cfg


def packed_copy(em, node, role: str) -> int:
    """Offset of a float matrix packed for matvec_packed (a derived copy, one per model:
    W_hh costs its size once more in memory for a 15-20% faster mat-vec), -1 for int8."""
    if node.weights[role].dtype != np.float32:
        return -1
    return em.derived(node, role, "panels", pack_panels)


PACKED_MIN_ROWS = 64


def input_packed_copy(em, node) -> int:
    """Offset of W_ih packed by pack_panels for the batched input products, -1 where no
    packed kernel runs (int8, or no AVX-512: linalg.WIDE_VECTORS); W_ih costs its size once
    more in memory. The LSTM and GRU batches' per-step matmat_fma2 passes (run() on a batch)
    read it at any input size; matmat_packed (streams(n), a batch's projection) only from
    PACKED_MIN_ROWS inputs (for_matmat_packed)."""
    W = node.weights["W_ih"]
    if not WIDE_VECTORS or W.dtype != np.float32:
        return -1
    return em.derived(node, "W_ih", "panels", pack_panels)


@njit(inline="always", **KERNEL)
def for_matmat_packed(p_ih, rows):
    """p_ih where matmat_packed is the better kernel for a W_ih of `rows` inputs, else -1
    (matmat_acc on the row-major copy). The input product of 32 sequences x T steps was the
    larger half of run()'s time with matmat_acc (LSTM (256,512) B=32: 22.8 of 42 us per
    sequence-step at 46 GFLOP/s; the packed kernel runs the recurrent product at ~105
    GFLOP/s); under PACKED_MIN_ROWS inputs the packed kernel loses (2048 x 16 @ 16 x 256: 43
    vs 56 GFLOP/s; x 64 @ 64 x 512: 75 vs 61, x 256 @ 256 x 2048: 92 vs 47)."""
    return p_ih if rows >= PACKED_MIN_ROWS else np.int64(-1)


@njit(**KERNEL)
def full_length(lengths, T):
    """True when no sequence of the batch is shorter than T (the batched loops apply)."""
    for b in range(lengths.shape[0]):
        if lengths[b] != T:
            return False
    return True
