"""The device interpreter: the whole program for all streams in one kernel launch.

Block k steps streams k*STREAMS_PER_BLOCK ... k*STREAMS_PER_BLOCK + nb - 1 (rows of `st`,
the state, and `sc`, the scratch: a CPU memory row [state | scratch] split in two arrays so
that get_state copies back the state only). Its threads run the program's rows in order
with a barrier after each, so one launch per step serves the whole pool, never one per
layer or per stream (a numba.cuda launch costs several microseconds of host time).
`run_kernel` goes further for whole sequences: one launch for the batch, each block
stepping its sequences through all T steps with the recurrent matrices W_hh staged once in
shared memory where they fit (staging.py; the other weights are read from global memory
through L2). `seq_kernel` runs padded batches and reverse layers: one launch, a block per
sequence stepping segments of the program forwards or backwards (staging.segments).
The cheap per-step ops (Embedding, Gather, Reduce, Conv1d, TimeReduce, History) are in
step_ops.py, written so that they can live outside this module (see below).

One device function per op (field names and semantics are the op modules', lstm_infer/ops/):
threads of the block split the op's output units; a mat-vec thread owns column j for all
the block's streams and reads each weight W[k, j] once for them (a small batched product:
weights read once per STREAMS_PER_BLOCK streams; adjacent threads read adjacent columns of
the (in, out) matrices, i.e. coalesced). A phase that reads what other threads wrote
follows a cuda.syncthreads(). int8 matrices are read from `w8`, the arena's bytes, at the
byte offsets the CPU kernels use, with their per-column float32 scales.

Everything that calls cuda.threadIdx/syncthreads lives in this one module: numba's
simulator swaps a module's `cuda` global for its fake on each device-function call and
restores it on return, which raced between simulated threads when the op functions sat in
a module of their own (AttributeError "no attribute 'threadIdx'" in the GRU, seen here);
a kernel's own module is swapped once for the whole launch.
"""
from __future__ import annotations

from numba import cuda, float32

from ..ops import (activation, binary, concat, conv1d, embedding, gather, gru, history, layernorm,
                   linear, lstm, reduce, rnn, scale, time_reduce)
from ..ops.base import IN, OUT
from .device_math import (binary_op, clipv, elementwise, fast_sigmoid, fast_tanh, gate_act,
                          layer_norm, softmax)
from .step_ops import (conv1d_step, embedding_step, gather_step, history_step, reduce_step,
                       time_reduce_count, time_reduce_values)

STREAMS_PER_BLOCK = 4


@cuda.jit(device=True)
def set_bias(out, o_col, w, b_off, n, b0, nb):
    """out[b, o_col + j] = bias[j] (0 without bias) for the block's streams; threads over j."""
    for j in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        v = w[b_off + j] if b_off >= 0 else float32(0.0)
        for s in range(nb):
            out[b0 + s, o_col + j] = v


@cuda.jit(device=True)
def matvec(out, o_col, x, x_col, w, w8, w_off, s_off, rows, stride, c0, n, b0, nb, wsh, sh):
    """out[b, o_col + j] += sum_k x[b, x_col + k] * W[k, c0 + j], j < n, W (rows, stride) at
    w[w_off:] (float32, s_off < 0) or w8[w_off:] (int8, per-column scales at w[s_off:]).
    sh >= 0: W's values are staged at wsh[sh:] (shared memory, the same layout; an int8
    matrix as its exact float32 values), read there instead of from global memory."""
    acc = cuda.local.array(STREAMS_PER_BLOCK, float32)
    for j in range(cuda.threadIdx.x, n, cuda.blockDim.x):
        for s in range(STREAMS_PER_BLOCK):
            acc[s] = float32(0.0)
        if sh >= 0:
            col = sh + c0 + j
            for k in range(rows):
                wv = wsh[col + k * stride]
                for s in range(nb):
                    acc[s] += x[b0 + s, x_col + k] * wv
        elif s_off < 0:
            col = w_off + c0 + j
            for k in range(rows):
                wv = w[col + k * stride]
                for s in range(nb):
                    acc[s] += x[b0 + s, x_col + k] * wv
        else:
            col = w_off + c0 + j
            for k in range(rows):
                wv = float32(w8[col + k * stride])
                for s in range(nb):
                    acc[s] += x[b0 + s, x_col + k] * wv
        if s_off < 0:
            for s in range(nb):
                out[b0 + s, o_col + j] += acc[s]
        else:
            sj = w[s_off + c0 + j]
            for s in range(nb):
                out[b0 + s, o_col + j] += sj * acc[s]


@cuda.jit(device=True)
def copy_cols(dst, d_col, src, s_col, n, b0, nb):
    for q in range(cuda.threadIdx.x, nb * n, cuda.blockDim.x):
        b = b0 + q // n
        j = q % n
        dst[b, d_col + j] = src[b, s_col + j]


@cuda.jit(device=True)
def linear_step(prog, r, w, w8, st, sc, b0, nb):
    i0 = prog[r, IN]
    o0 = prog[r, OUT]
    I = prog[r, linear.IN_SIZE]
    O = prog[r, linear.OUT_SIZE]
    G = prog[r, linear.GROUPS]
    set_bias(sc, o0, w, prog[r, linear.BIAS], O, b0, nb)
    if G > 1:  # a group's columns are owned by other threads than in set_bias
        cuda.syncthreads()
    Ig = I // G
    Og = O // G
    for g in range(G):  # group g: inputs [g*Ig, (g+1)*Ig) times columns [g*Og, (g+1)*Og)
        matvec(sc, o0 + g * Og, sc, i0 + g * Ig, w, w8, prog[r, linear.W], prog[r, linear.W_SCALE],
               Ig, O, g * Og, Og, b0, nb, w, -1)


@cuda.jit(device=True)
def lstm_unit(gi, gf, gg, go, cp, w, cfg, p0, j, H):
    """One LSTM unit (ops/lstm.py lstm_pointwise / lstm_pointwise_general): (c, h)."""
    if w[cfg] == 0:
        c = fast_sigmoid(gf) * cp + fast_sigmoid(gi) * fast_tanh(gg)
        return c, fast_sigmoid(go) * fast_tanh(c)
    clip = w[cfg + 1]
    fk, fa, fb = int(w[cfg + 4]), w[cfg + 5], w[cfg + 6]
    if w[cfg + 3] != 0:
        gi += w[p0 + j] * cp
        gf += w[p0 + H + j] * cp
    ig = gate_act(clipv(gi, clip), fk, fa, fb)
    if w[cfg + 2] != 0:
        fg = float32(1.0) - ig
    else:
        fg = gate_act(clipv(gf, clip), fk, fa, fb)
    c = fg * cp + ig * gate_act(clipv(gg, clip), int(w[cfg + 7]), w[cfg + 8], w[cfg + 9])
    if w[cfg + 3] != 0:
        go += w[p0 + 2 * H + j] * c
    og = gate_act(clipv(go, clip), fk, fa, fb)
    return c, og * gate_act(c, int(w[cfg + 10]), w[cfg + 11], w[cfg + 12])


@cuda.jit(device=True)
def lstm_step(prog, r, w, w8, st, sc, b0, nb, wsh, sh):
    i0 = prog[r, IN]
    o0 = prog[r, OUT]
    I = prog[r, lstm.IN_SIZE]
    H = prog[r, lstm.HIDDEN]
    P = prog[r, lstm.PROJ]
    R = P if P > 0 else H
    g0 = prog[r, lstm.GATES]
    h0 = prog[r, lstm.STATE_H]
    c0 = prog[r, lstm.STATE_C]
    hf = prog[r, lstm.HFULL]
    set_bias(sc, g0, w, prog[r, lstm.BIAS], 4 * H, b0, nb)
    matvec(sc, g0, sc, i0, w, w8, prog[r, lstm.W_IH], prog[r, lstm.W_IH_SCALE], I, 4 * H, 0,
           4 * H, b0, nb, w, -1)
    matvec(sc, g0, st, h0, w, w8, prog[r, lstm.W_HH], prog[r, lstm.W_HH_SCALE], R, 4 * H, 0,
           4 * H, b0, nb, wsh, sh)
    cuda.syncthreads()  # every gate column is done, and h is read: the cell may write it
    for q in range(cuda.threadIdx.x, nb * H, cuda.blockDim.x):
        b = b0 + q // H
        j = q % H
        c, h = lstm_unit(sc[b, g0 + j], sc[b, g0 + H + j], sc[b, g0 + 2 * H + j],
                         sc[b, g0 + 3 * H + j], st[b, c0 + j], w, prog[r, lstm.CFG],
                         prog[r, lstm.PEEPHOLE], j, H)
        st[b, c0 + j] = c
        if P > 0:
            sc[b, hf + j] = h
        else:
            st[b, h0 + j] = h
    if P > 0:  # h = hfull W_hr
        cuda.syncthreads()
        set_bias(st, h0, w, -1, P, b0, nb)
        matvec(st, h0, sc, hf, w, w8, prog[r, lstm.W_HR], prog[r, lstm.W_HR_SCALE], H, P, 0, P,
               b0, nb, w, -1)
    cuda.syncthreads()
    copy_cols(sc, o0, st, h0, R, b0, nb)
    if prog[r, lstm.OUTPUT_CELL]:
        copy_cols(sc, o0 + R, st, c0, H, b0, nb)


@cuda.jit(device=True)
def gru_step(prog, r, w, w8, st, sc, b0, nb, wsh, sh):
    """ops/gru.py: gx = x W_ih + b_ih, gh = h W_hh + b_hh (reset-before: the n columns from
    (r*h) W_hn once r is known), then the update of h."""
    i0 = prog[r, IN]
    o0 = prog[r, OUT]
    I = prog[r, gru.IN_SIZE]
    H = prog[r, gru.HIDDEN]
    lbr = prog[r, gru.LBR]
    gx = prog[r, gru.GX]
    gh = prog[r, gru.GH]
    rh = prog[r, gru.RH]
    h0 = prog[r, gru.STATE_H]
    cfg = prog[r, gru.CFG]
    whh = prog[r, gru.W_HH]
    whh_s = prog[r, gru.W_HH_SCALE]
    set_bias(sc, gx, w, prog[r, gru.B_IH], 3 * H, b0, nb)
    matvec(sc, gx, sc, i0, w, w8, prog[r, gru.W_IH], prog[r, gru.W_IH_SCALE], I, 3 * H, 0, 3 * H,
           b0, nb, w, -1)
    set_bias(sc, gh, w, prog[r, gru.B_HH], 3 * H, b0, nb)
    general = w[cfg] != 0
    clip = w[cfg + 1]
    fk, fa, fb = int(w[cfg + 4]), w[cfg + 5], w[cfg + 6]
    gk, ga, gb = int(w[cfg + 7]), w[cfg + 8], w[cfg + 9]
    if lbr:
        matvec(sc, gh, st, h0, w, w8, whh, whh_s, H, 3 * H, 0, 3 * H, b0, nb, wsh, sh)
    else:
        matvec(sc, gh, st, h0, w, w8, whh, whh_s, H, 3 * H, 0, 2 * H, b0, nb, wsh, sh)
        cuda.syncthreads()
        for q in range(cuda.threadIdx.x, nb * H, cuda.blockDim.x):
            b = b0 + q // H
            k = q % H
            v = sc[b, gx + k] + sc[b, gh + k]
            rg = gate_act(clipv(v, clip), fk, fa, fb) if general else fast_sigmoid(v)
            sc[b, rh + k] = rg * st[b, h0 + k]
        cuda.syncthreads()
        matvec(sc, gh + 2 * H, sc, rh, w, w8, whh, whh_s, H, 3 * H, 2 * H, H, b0, nb, wsh, sh)
    cuda.syncthreads()
    for q in range(cuda.threadIdx.x, nb * H, cuda.blockDim.x):
        b = b0 + q // H
        j = q % H
        xr, xz, xn = sc[b, gx + j], sc[b, gx + H + j], sc[b, gx + 2 * H + j]
        hr, hz, hn = sc[b, gh + j], sc[b, gh + H + j], sc[b, gh + 2 * H + j]
        if general:
            z = gate_act(clipv(xz + hz, clip), fk, fa, fb)
            if lbr:
                rg = gate_act(clipv(xr + hr, clip), fk, fa, fb)
                n = gate_act(clipv(xn + rg * hn, clip), gk, ga, gb)
            else:
                n = gate_act(clipv(xn + hn, clip), gk, ga, gb)
        else:
            z = fast_sigmoid(xz + hz)
            if lbr:
                n = fast_tanh(xn + fast_sigmoid(xr + hr) * hn)
            else:
                n = fast_tanh(xn + hn)
        hj = (float32(1.0) - z) * n + z * st[b, h0 + j]
        st[b, h0 + j] = hj
        sc[b, o0 + j] = hj


@cuda.jit(device=True)
def rnn_step(prog, r, w, w8, st, sc, b0, nb, wsh, sh):
    """ops/rnn.py: h = f(x W_ih + h W_hh + bias)."""
    i0 = prog[r, IN]
    o0 = prog[r, OUT]
    I = prog[r, rnn.IN_SIZE]
    H = prog[r, rnn.HIDDEN]
    h0 = prog[r, rnn.STATE_H]
    cfg = prog[r, rnn.CFG]
    set_bias(sc, o0, w, prog[r, rnn.BIAS], H, b0, nb)
    matvec(sc, o0, sc, i0, w, w8, prog[r, rnn.W_IH], prog[r, rnn.W_IH_SCALE], I, H, 0, H, b0, nb,
           w, -1)
    matvec(sc, o0, st, h0, w, w8, prog[r, rnn.W_HH], prog[r, rnn.W_HH_SCALE], H, H, 0, H, b0, nb,
           wsh, sh)
    cuda.syncthreads()  # h is read by every column: now it may be written
    for q in range(cuda.threadIdx.x, nb * H, cuda.blockDim.x):
        b = b0 + q // H
        j = q % H
        v = sc[b, o0 + j]
        if w[cfg] == 0:
            v = fast_tanh(v)
        else:
            v = gate_act(clipv(v, w[cfg + 1]), int(w[cfg + 4]), w[cfg + 5], w[cfg + 6])
        st[b, h0 + j] = v
        sc[b, o0 + j] = v


@cuda.jit(device=True)
def activation_step(prog, r, w, sc, b0, nb):
    i0 = prog[r, IN]
    o0 = prog[r, OUT]
    F = prog[r, activation.SIZE]
    kind = prog[r, activation.KIND]
    a0 = prog[r, activation.PARAMS]
    if kind == 9 or kind == 10:  # softmax / log_softmax: one thread per (stream, group)
        G = prog[r, activation.GROUP]
        ng = F // G
        for q in range(cuda.threadIdx.x, nb * ng, cuda.blockDim.x):
            b = b0 + q // ng
            g0 = (q % ng) * G
            softmax(sc[b, i0 + g0:i0 + g0 + G], sc[b, o0 + g0:o0 + g0 + G], G, kind)
        return
    for q in range(cuda.threadIdx.x, nb * F, cuda.blockDim.x):
        b = b0 + q // F
        j = q % F
        sc[b, o0 + j] = elementwise(sc[b, i0 + j], kind, w[a0], w[a0 + 1])


@cuda.jit(device=True)
def binary_step(prog, r, sc, b0, nb):
    i0 = prog[r, IN]
    o0 = prog[r, OUT]
    i1 = prog[r, binary.OTHER]
    F = prog[r, binary.SIZE]
    kind = prog[r, binary.KIND]
    for q in range(cuda.threadIdx.x, nb * F, cuda.blockDim.x):
        b = b0 + q // F
        j = q % F
        sc[b, o0 + j] = binary_op(sc[b, i0 + j], sc[b, i1 + j], kind)


@cuda.jit(device=True)
def scale_step(prog, r, w, sc, b0, nb):
    i0 = prog[r, IN]
    o0 = prog[r, OUT]
    F = prog[r, scale.SIZE]
    s0 = prog[r, scale.SCALE]
    t0 = prog[r, scale.SHIFT]
    for q in range(cuda.threadIdx.x, nb * F, cuda.blockDim.x):
        b = b0 + q // F
        j = q % F
        v = sc[b, i0 + j]
        if s0 >= 0:
            v = v * w[s0 + j]
        if t0 >= 0:
            v = v + w[t0 + j]
        sc[b, o0 + j] = v


@cuda.jit(device=True)
def layernorm_step(prog, r, w, sc, b0, nb):
    """One thread per (stream, row): the CPU's two-pass float64 layernorm."""
    i0 = prog[r, IN]
    o0 = prog[r, OUT]
    F = prog[r, layernorm.SIZE]
    rows = prog[r, layernorm.ROWS]
    for q in range(cuda.threadIdx.x, nb * rows, cuda.blockDim.x):
        b = b0 + q // rows
        a = (q % rows) * F
        layer_norm(sc[b, i0 + a:i0 + a + F], sc[b, o0 + a:o0 + a + F], F, w[prog[r, layernorm.EPS]],
                   w, prog[r, layernorm.WEIGHT], prog[r, layernorm.BIAS])


@cuda.jit(device=True)
def run_op(prog, r, w, w8, w32, st, sc, b0, nb, wsh, sh):
    """Program row r for the block's streams (dispatch by opcode, as kernels/interpreter.py);
    sh: where row r's W_hh is staged in the shared memory wsh, or -1 (global memory)."""
    op = prog[r, 0]
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    if op == linear.OPCODE:
        linear_step(prog, r, w, w8, st, sc, b0, nb)
    elif op == lstm.OPCODE:
        lstm_step(prog, r, w, w8, st, sc, b0, nb, wsh, sh)
    elif op == gru.OPCODE:
        gru_step(prog, r, w, w8, st, sc, b0, nb, wsh, sh)
    elif op == rnn.OPCODE:
        rnn_step(prog, r, w, w8, st, sc, b0, nb, wsh, sh)
    elif op == concat.OPCODE:
        copy_cols(sc, prog[r, OUT], sc, prog[r, IN], prog[r, concat.SIZE], b0, nb)
    elif op == activation.OPCODE:
        activation_step(prog, r, w, sc, b0, nb)
    elif op == binary.OPCODE:
        binary_step(prog, r, sc, b0, nb)
    elif op == scale.OPCODE:
        scale_step(prog, r, w, sc, b0, nb)
    elif op == layernorm.OPCODE:
        layernorm_step(prog, r, w, sc, b0, nb)
    elif op == embedding.OPCODE:
        embedding_step(prog, r, w, sc, b0, nb, tid, nt)
    elif op == gather.OPCODE:
        gather_step(prog, r, w32, sc, b0, nb, tid, nt)
    elif op == reduce.OPCODE:
        reduce_step(prog, r, sc, b0, nb, tid, nt)
    elif op == conv1d.OPCODE:
        conv1d_step(prog, r, w, sc, b0, nb, tid, nt)
    elif op == history.OPCODE:
        history_step(prog, r, st, sc, b0, nb, tid, nt)
    elif op == time_reduce.OPCODE:
        time_reduce_values(prog, r, st, sc, b0, nb, tid, nt)
        cuda.syncthreads()  # every feature has read the old count
        time_reduce_count(prog, r, st, b0, nb, tid, nt)


@cuda.jit(device=True)
def stage_weights(stage, w, w8, wsh):
    """Copies the matrices listed in `stage` (rows [src, n, int8, dst], staging.py) into the
    shared memory wsh, once per launch; an int8 matrix as its exact float32 values."""
    for m in range(stage.shape[0]):
        src = stage[m, 0]
        dst = stage[m, 3]
        for i in range(cuda.threadIdx.x, stage[m, 1], cuda.blockDim.x):
            wsh[dst + i] = float32(w8[src + i]) if stage[m, 2] else w[src + i]
    cuda.syncthreads()


@cuda.jit(device=True)
def _run_program(prog, w, w8, w32, st, sc, b0, nb, wsh, shoff):
    cuda.syncthreads()
    for r in range(1, prog[0, 0] + 1):
        run_op(prog, r, w, w8, w32, st, sc, b0, nb, wsh, shoff[r])
        cuda.syncthreads()


@cuda.jit
def step_kernel(prog, w, w8, w32, shoff, st, sc, x, y):
    """One step of n streams: x (n, I) -> y (n, O); state st (n, S) updated in place.
    Nothing is staged in shared memory (shoff all -1): each block reads W_hh once per step
    either way, so a copy to shared memory would only add a pass."""
    n = st.shape[0]
    b0 = cuda.blockIdx.x * STREAMS_PER_BLOCK
    nb = min(STREAMS_PER_BLOCK, n - b0)
    if nb <= 0:  # the whole block leaves together, so no barrier is left waiting
        return
    copy_cols(sc, prog[0, 1], x, 0, prog[0, 2], b0, nb)
    _run_program(prog, w, w8, w32, st, sc, b0, nb, w, shoff)
    copy_cols(y, 0, sc, prog[0, 3], prog[0, 4], b0, nb)


@cuda.jit
def run_kernel(prog, w, w8, w32, shoff, stage, st, sc, xs, ys):
    """T steps of B sequences from the state in st: xs (T, B, I) -> ys (T, B, O).

    The persistent-RNN idea (Diamos et al., "Persistent RNNs", Baidu 2016; cuDNN's
    CUDNN_RNN_ALGO_PERSIST_STATIC): the block lives for all T steps, so the recurrent
    matrices W_hh, read again at every step, are copied once into the block's dynamic
    shared memory (`stage`, planned by staging.py within a conservative 48 KB: the
    per-block limit without an opt-in) and read from there at every step; the matrices
    that do not fit are read from global memory (through L2). Same values, same order of
    summation: the results are bit-identical either way (tests/test_cuda_sim.py).
    """
    wsh = cuda.shared.array(0, float32)
    n = st.shape[0]
    b0 = cuda.blockIdx.x * STREAMS_PER_BLOCK
    nb = min(STREAMS_PER_BLOCK, n - b0)
    if nb <= 0:
        return
    stage_weights(stage, w, w8, wsh)
    for t in range(xs.shape[0]):
        copy_cols(sc, prog[0, 1], xs[t], 0, prog[0, 2], b0, nb)
        _run_program(prog, w, w8, w32, st, sc, b0, nb, wsh, shoff)
        copy_cols(ys[t], 0, sc, prog[0, 3], prog[0, 4], b0, nb)
        cuda.syncthreads()  # the output slot is read before the next step overwrites it


@cuda.jit
def seq_kernel(prog, segs, recurrent, lens, w, w8, w32, shoff, stage, st, sc3, xs, ys):
    """Padded batches and reverse layers: xs (T, B, I) -> ys (T, B, O), one block per
    sequence b (its own length lens[b]), scratch per time step sc3 (T, B, scratch).

    The program's rows run in segments (`segs` rows [r0, r1, reverse], staging.py): a
    forward segment steps t = 0 .. T-1 through its rows, skipping the recurrent ones
    (`recurrent[r]`) past the sequence's length, whose outputs stay zero as on the CPU; a
    reverse segment (one reverse layer) steps t = L-1 .. 0. A segment reads what earlier
    segments wrote at any step, which is why scratch is kept per step here (T*B*scratch
    floats) while run_kernel keeps one row per sequence.
    """
    wsh = cuda.shared.array(0, float32)
    b = cuda.blockIdx.x
    if b >= st.shape[0]:
        return
    T = xs.shape[0]
    L = lens[b]
    F = sc3.shape[2]
    for t in range(T):
        for q in range(cuda.threadIdx.x, F, cuda.blockDim.x):
            sc3[t, b, q] = float32(0.0)
        cuda.syncthreads()
        copy_cols(sc3[t], prog[0, 1], xs[t], 0, prog[0, 2], b, 1)
    stage_weights(stage, w, w8, wsh)
    for g in range(segs.shape[0]):
        rev = segs[g, 2] != 0
        for s in range(L if rev else T):
            t = L - 1 - s if rev else s
            for r in range(segs[g, 0], segs[g, 1]):
                if t < L or not recurrent[r]:
                    run_op(prog, r, w, w8, w32, st, sc3[t], b, 1, wsh, shoff[r])
                cuda.syncthreads()
    for t in range(T):
        copy_cols(ys[t], 0, sc3[t], prog[0, 3], prog[0, 4], b, 1)


def blocks(n: int) -> int:
    return (n + STREAMS_PER_BLOCK - 1) // STREAMS_PER_BLOCK
