"""Device functions for the cheap per-step ops: Embedding, Gather, Reduce, Conv1d,
TimeReduce, History.

The same per-step semantics as their CPU step kernels (lstm_infer/ops/embedding.py,
gather.py, reduce.py, conv1d.py, time_reduce.py, history.py), for the block's streams b0 .. b0 + nb - 1: the
threads split (stream, output element) pairs, thread `tid` of `nt` taking every nt-th.

These functions take the thread index and count as arguments and never touch
cuda.threadIdx or cuda.syncthreads themselves: numba's simulator swaps the `cuda` global
of a device function's module while the function runs, which races between simulated
threads in any module other than the kernel's own (kernels.py's docstring). Where an op
needs a barrier between two phases (TimeReduce reads the step count in the first and
bumps it in the second), kernels.py calls the two phases with its barrier in between.
"""
from __future__ import annotations

from numba import cuda, float32

from ..ops import conv1d, embedding, gather, history, reduce, time_reduce
from ..ops.base import IN, OUT


@cuda.jit(device=True)
def valid_id(v, V):
    """ops/embedding.valid_id: an integer in [0, V) (NaN and Inf fail the range tests
    before the conversion; int() truncates, which is floor for v >= 0)."""
    return v >= 0 and v < V and v == float32(int(v))


@cuda.jit(device=True)
def embedding_step(prog, r, w, sc, b0, nb, tid, nt):
    """y[k*D + j] = table[id_k, j]; an invalid id (only from a computed input: ids from the
    graph input are checked on the host before the launch) gives zeros, as on the CPU."""
    i0 = prog[r, IN]
    o0 = prog[r, OUT]
    K = prog[r, embedding.COUNT]
    V = prog[r, embedding.VOCAB]
    D = prog[r, embedding.DIM]
    t0 = prog[r, embedding.TABLE]
    for q in range(tid, nb * K * D, nt):
        b = b0 + q // (K * D)
        k = (q % (K * D)) // D
        j = q % D
        v = sc[b, i0 + k]
        sc[b, o0 + k * D + j] = w[t0 + int(v) * D + j] if valid_id(v, V) else float32(0.0)


@cuda.jit(device=True)
def gather_step(prog, r, w32, sc, b0, nb, tid, nt):
    """y[j] = x[index[j]] or 0 where index[j] is -1; the indices are int32 bit patterns in
    the arena (ops/gather._as_int32), read through `w32`, the arena viewed as int32."""
    i0 = prog[r, IN]
    o0 = prog[r, OUT]
    x0 = prog[r, gather.INDEX]
    n = prog[r, gather.OUT_SIZE]
    for q in range(tid, nb * n, nt):
        b = b0 + q // n
        j = q % n
        k = w32[x0 + j]
        sc[b, o0 + j] = sc[b, i0 + k] if k >= 0 else float32(0.0)


@cuda.jit(device=True)
def reduce_step(prog, r, sc, b0, nb, tid, nt):
    """Mean, sum, max or min over the middle axis of (outer, axis, inner); a thread per
    (stream, output element), the axis in the CPU's order (ops/reduce.reduce)."""
    i0 = prog[r, IN]
    o0 = prog[r, OUT]
    kind = prog[r, reduce.KIND]
    axis = prog[r, reduce.AXIS]
    inner = prog[r, reduce.INNER]
    n = prog[r, reduce.OUTER] * inner
    for q in range(tid, nb * n, nt):
        b = b0 + q // n
        e = q % n
        base = i0 + (e // inner) * axis * inner + e % inner
        acc = sc[b, base]
        for a in range(1, axis):
            v = sc[b, base + a * inner]
            if kind <= 1:
                acc += v
            elif kind == 2:
                acc = max(acc, v)
            else:
                acc = min(acc, v)
        sc[b, o0 + e] = acc / axis if kind == 0 else acc


@cuda.jit(device=True)
def conv1d_step(prog, r, w, sc, b0, nb, tid, nt):
    """One step's Conv1d over (C, L) -> (M, L_out), W (M, C/groups, K) as stored (not the
    CPU's packed copy): a thread per (stream, m, t), terms added in the CPU direct kernel's
    order (bias, then input channel, then tap; the CPU's implicit GEMM for wide layers adds
    them in another order: agreement to float32 rounding, not bit for bit)."""
    i0 = prog[r, IN]
    o0 = prog[r, OUT]
    C = prog[r, conv1d.CHANNELS]
    L = prog[r, conv1d.LENGTH]
    M = prog[r, conv1d.OUT_CHANNELS]
    K = prog[r, conv1d.KERNEL_SIZE]
    stride = prog[r, conv1d.STRIDE]
    dil = prog[r, conv1d.DILATION]
    pad = prog[r, conv1d.PAD_LEFT]
    L_out = prog[r, conv1d.OUT_LENGTH]
    w0 = prog[r, conv1d.W]
    b_off = prog[r, conv1d.BIAS]
    cg = C // prog[r, conv1d.GROUPS]
    mg = M // prog[r, conv1d.GROUPS]
    for q in range(tid, nb * M * L_out, nt):
        b = b0 + q // (M * L_out)
        m = (q % (M * L_out)) // L_out
        t = q % L_out
        acc = w[b_off + m] if b_off >= 0 else float32(0.0)
        for ci in range(cg):
            x0 = i0 + ((m // mg) * cg + ci) * L
            for k in range(K):
                p = t * stride + k * dil - pad
                if p >= 0 and p < L:
                    acc += w[w0 + (m * cg + ci) * K + k] * sc[b, x0 + p]
        sc[b, o0 + m * L_out + t] = acc


@cuda.jit(device=True)
def time_reduce_values(prog, r, st, sc, b0, nb, tid, nt):
    """Phase 1 of ops/time_reduce.accumulate: acc and y from the count before this step
    (read, not written: every feature's thread needs the old count)."""
    F = prog[r, time_reduce.SIZE]
    i0 = prog[r, IN]
    o0 = prog[r, OUT]
    a0 = prog[r, time_reduce.ACC]
    c0 = prog[r, time_reduce.COUNT]
    kind = prog[r, time_reduce.KIND]
    for q in range(tid, nb * F, nt):
        b = b0 + q // F
        j = q % F
        cnt = st[b, c0]
        n = cnt + float32(1.0)
        v = sc[b, i0 + j]
        if cnt < float32(0.5):  # the first step (or a restored count < 1) starts afresh
            a = v
        elif kind <= 1:
            a = st[b, a0 + j] + v
        elif kind == 2:
            a = max(st[b, a0 + j], v)
        else:
            a = min(st[b, a0 + j], v)
        st[b, a0 + j] = a
        sc[b, o0 + j] = a / n if kind == 0 else a


@cuda.jit(device=True)
def time_reduce_count(prog, r, st, b0, nb, tid, nt):
    """Phase 2, after a barrier: count += 1 for each stream."""
    c0 = prog[r, time_reduce.COUNT]
    for s in range(tid, nb, nt):
        st[b0 + s, c0] = st[b0 + s, c0] + float32(1.0)


@cuda.jit(device=True)
def history_step(prog, r, st, sc, b0, nb, tid, nt):
    """y = [x_{t-(K-1)D}, ..., x_{t-D}, x_t]; `past` drops its oldest frame and takes x_t.
    A thread owns feature j of every frame of one stream, so the in-place shift of `past`
    needs no barrier (no other thread reads or writes that feature)."""
    F = prog[r, history.SIZE]
    K = prog[r, history.FRAMES]
    D = prog[r, history.DILATION]
    L = (K - 1) * D
    i0 = prog[r, IN]
    o0 = prog[r, OUT]
    p0 = prog[r, history.PAST]
    for q in range(tid, nb * F, nt):
        b = b0 + q // F
        j = q % F
        x = sc[b, i0 + j]
        for i in range(K - 1):  # frame i is x_{t-(K-1-i)D} = past frame i*D
            sc[b, o0 + i * F + j] = st[b, p0 + i * D * F + j]
        sc[b, o0 + (K - 1) * F + j] = x
        for m in range(L - 1):
            st[b, p0 + m * F + j] = st[b, p0 + (m + 1) * F + j]
        st[b, p0 + (L - 1) * F + j] = x
