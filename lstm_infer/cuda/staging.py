"""Host-side tables the device kernels read (numpy only, no numba.cuda): which recurrent
matrices run_kernel stages in shared memory, and the segments seq_kernel steps through.
"""
from __future__ import annotations

import numpy as np

from ..ops import gru, lstm, rnn

# Bytes of dynamic shared memory a block may ask for without an opt-in (cudaFuncSetAttribute)
# on every CUDA GPU since Kepler: staging stays within it, so no launch can fail on size.
SHARED_LIMIT = 48 * 1024


def recurrent_matrix(row: np.ndarray) -> tuple[int, int, bool] | None:
    """(offset, floats, int8) of a program row's W_hh (R rows times G*H columns), None for
    a row that has none. The offset is in floats, or in bytes for an int8 matrix."""
    op = row[0]
    if op == lstm.OPCODE:
        H = int(row[lstm.HIDDEN])
        R = int(row[lstm.PROJ]) or H
        return int(row[lstm.W_HH]), R * 4 * H, bool(row[lstm.W_HH_SCALE] >= 0)
    if op == gru.OPCODE:
        H = int(row[gru.HIDDEN])
        return int(row[gru.W_HH]), H * 3 * H, bool(row[gru.W_HH_SCALE] >= 0)
    if op == rnn.OPCODE:
        H = int(row[rnn.HIDDEN])
        return int(row[rnn.W_HH]), H * H, bool(row[rnn.W_HH_SCALE] >= 0)
    return None


def shared_stage(prog: np.ndarray, limit: int = SHARED_LIMIT) -> tuple[np.ndarray, np.ndarray, int]:
    """The W_hh matrices to keep in shared memory: in program order, each one that still
    fits in `limit` bytes with those before it (float32 each: an int8 matrix is staged as its exact float values, so the
    mat-vec is the same arithmetic): `stage` rows [src, floats, int8, dst] (one empty row
    when nothing fits: the kernels take an array either way), `shoff` (row -> dst or -1)
    and the shared bytes the launch must ask for."""
    shoff = np.full(prog.shape[0], -1, np.int64)
    rows, used = [], 0
    for r in range(1, int(prog[0, 0]) + 1):
        m = recurrent_matrix(prog[r])
        if m is None or 4 * (used + m[1]) > limit:
            continue
        rows.append([m[0], m[1], int(m[2]), used])
        shoff[r] = used
        used += m[1]
    stage = np.array(rows or [[0, 0, 0, 0]], np.int64)
    return stage, shoff, 4 * used


def segments(graph, node_rows: dict[str, int], n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The program cut for seq_kernel: rows [r0, r1, reverse] (a reverse layer alone, runs
    of other nodes together, the output copy rows last) and `recurrent` (row -> 1 for the
    rows of a stateful node, which stop at each sequence's length)."""
    recurrent = np.zeros(n_rows + 1, np.int64)
    starts = [node_rows[n.name] for n in graph.nodes] + [n_rows + 1 - len(graph.outputs)]
    segs: list[list[int]] = []
    for node, r0, r1 in zip(graph.nodes, starts, starts[1:]):
        recurrent[r0:r1] = int(node.is_recurrent)
        rev = int(bool(node.is_recurrent and node.attrs.get("reverse")))
        if segs and not rev and not segs[-1][2]:
            segs[-1][1] = r1
        else:
            segs.append([r0, r1, rev])
    if segs and not segs[-1][2]:
        segs[-1][1] = n_rows + 1
    else:
        segs.append([starts[-1], n_rows + 1, 0])
    return np.array(segs, np.int64), recurrent
