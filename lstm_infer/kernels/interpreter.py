"""The per-step interpreter: one compiled call runs the whole model for one or n streams.

A model is compiled (lstm_infer/plan.py) into a small int64 program, one row of
PROG_WIDTH fields per op, plus three float32 arenas: weights `w` (1-D, read-only),
per-stream state and scratch. Offsets in the program point into them; each op module
(lstm_infer/ops/) names its row's fields and documents them. Because every model uses
the same kernel signatures, the kernels compile once per installation, not per model.

The first row is a header: n_ops, input offset, input size, output offset, output size,
state size S. Each stream owns one row of `mem`: state in mem[:S], scratch after it, so a
step call unboxes few arrays (Numba's per-call cost grows with array arguments).

Two entry points: step_sequence (one stream, T steps; step() is T = 1) and step_streams (n
streams, one step). Numba re-optimises and re-emits the machine code of a function into every
function that calls it, so each op loop is inlined into its one entry point instead of being a
function of its own: with step_one, _run_ops and _run_op_streams as separate functions the ops
were compiled five times (interpreter compile events 31.6 -> 22.9 s CPU on a cold cache).

Dispatch is one line per op. The recurrent cells', Linear's and Concat's step kernels are
`inline="always"`: calling them as functions cost ~0.3 us per step on LSTM(16,64)+Linear
(measured, commit cf2934e). The other ops' steps are plain calls: inlining their bodies too
cost ~6 s of the first-use compile (45.5 -> 40 s, numba compile events) while a call costs
silero-vad's 38 us frame no measurable time.
"""

import numpy as np

from numba import njit

from ..ops import (activation, attention_pool, binary, causal_attention, concat, conv1d, conv_lstm,
                   embedding, gather, gru, history, layernorm, linear, lstm, mlstm, reduce, rnn, scale,
                   slstm, time_reduce)
from . import BORROWING, KERNEL


@njit(inline="always", **KERNEL)
def _run_op(prog, r, w, st, sc):
    """Op r of the program for one stream: st, sc are that stream's state and scratch rows."""
    op = prog[r, 0]
    if op == linear.OPCODE:
        linear.step(prog, r, w, st, sc)
    elif op == lstm.OPCODE:
        lstm.step(prog, r, w, st, sc)
    elif op == gru.OPCODE:
        gru.step(prog, r, w, st, sc)
    elif op == rnn.OPCODE:
        rnn.step(prog, r, w, st, sc)
    elif op == activation.OPCODE:
        activation.step(prog, r, w, st, sc)
    elif op == layernorm.OPCODE:
        layernorm.step(prog, r, w, st, sc)
    elif op == concat.OPCODE:
        concat.step(prog, r, w, st, sc)
    elif op == binary.OPCODE:
        binary.step(prog, r, w, st, sc)
    elif op == scale.OPCODE:
        scale.step(prog, r, w, st, sc)
    elif op == gather.OPCODE:
        gather.step(prog, r, w, st, sc)
    elif op == conv1d.OPCODE:
        conv1d.step(prog, r, w, st, sc)
    elif op == reduce.OPCODE:
        reduce.step(prog, r, w, st, sc)
    elif op == history.OPCODE:
        history.step(prog, r, w, st, sc)
    elif op == embedding.OPCODE:
        embedding.step(prog, r, w, st, sc)
    elif op == conv_lstm.OPCODE:
        conv_lstm.step(prog, r, w, st, sc)
    elif op == time_reduce.OPCODE:
        time_reduce.step(prog, r, w, st, sc)
    elif op == attention_pool.OPCODE:
        attention_pool.step(prog, r, w, st, sc)
    elif op == causal_attention.OPCODE:
        causal_attention.step(prog, r, w, st, sc)
    elif op == mlstm.OPCODE:
        mlstm.step(prog, r, w, st, sc)
    elif op == slstm.OPCODE:
        slstm.step(prog, r, w, st, sc)


@njit(inline="always", **KERNEL)
def _run_op_streams(prog, r, w, mem, S, tmp):
    """Op r for every stream (row of mem). Ops with a batched kernel (step_streams: the
    mat-vecs of all streams as one matmat_acc, each weight read once per four streams,
    bit-identical per stream) use it when it applies; everything else runs stream by stream.
    tmp: rows (at least as many as mem's) whose scratch an op may use for any stream's
    temporaries, the same rows for every block, so they stay in cache (ops/gru.py)."""
    op = prog[r, 0]
    done = False
    if op == linear.OPCODE:
        done = linear.step_streams(prog, r, w, mem, S)
    elif op == lstm.OPCODE:
        done = lstm.step_streams(prog, r, w, mem, S, tmp)
    elif op == gru.OPCODE:
        done = gru.step_streams(prog, r, w, mem, S, tmp)
    elif op == rnn.OPCODE:
        done = rnn.step_streams(prog, r, w, mem, S)
    if not done:
        for b in range(mem.shape[0]):
            row = mem[b]
            _run_op(prog, r, w, row[:S], row[S:])


@njit(inline="always", **KERNEL)
def _bits_finite(bits):
    """No NaN or Inf among the float32s whose bits are `bits` (uint32, 1-D): none has all 8
    exponent bits set. Counting those is an integer reduction LLVM vectorises; the
    early-exit isfinite loop ran scalar (a 64x64 ConvLSTM frame, 4096 floats: 2.26 -> 0.26
    us of thread time, called from compiled code)."""
    bad = np.uint32(0)
    for i in range(bits.size):
        bad += (bits[i] & np.uint32(0x7F800000)) == np.uint32(0x7F800000)
    return bad == 0


@njit(**KERNEL)
def _all_finite(x):
    """_bits_finite of any C-contiguous array (ravel is a view; it needs NRT, so the step
    interpreter, without NRT, views its vector itself)."""
    return _bits_finite(x.ravel().view(np.uint32))


@njit(inline="always", **KERNEL)
def _ids_ok(prog, x):
    """Every Embedding that reads the graph input finds valid token ids in x (I,)
    (ops/embedding.py: a bad id is refused before the step, like a NaN)."""
    in0 = prog[0, 1]
    for r in range(1, prog[0, 0] + 1):
        if prog[r, 0] == embedding.OPCODE and not embedding.ids_ok(prog, r, x, in0):
            return False
    return True


@njit(**KERNEL)
def _all_ids_ok(prog, xs):
    """_ids_ok for every row of xs (n, I)."""
    for t in range(xs.shape[0]):
        if not _ids_ok(prog, xs[t]):
            return False
    return True


@njit(inline="always", **KERNEL)
def _steps_ids_ok(prog, xs, I):
    """_ids_ok for every step of xs (T * I,), one step after another."""
    for t in range(xs.shape[0] // I):
        if not _ids_ok(prog, xs[t * I:(t + 1) * I]):
            return False
    return True


# Streams stepped op by op in blocks of this many: a block's memory rows stay in cache from
# one op to the next, where op by op over all n streams streamed every row from memory once
# per op (4096 streams of LSTM(16,64): ~10 MB per pass).
STREAM_BLOCK = 32


@njit(inline="always", **KERNEL)
def _room_ok(prog, st, steps):
    """Every full causal attention (ops/causal_attention.py, `limit`) has room for `steps`
    more steps in this stream's state row st."""
    for r in range(1, prog[0, 0] + 1):
        if prog[r, 0] == causal_attention.OPCODE and not causal_attention.room_ok(prog, r, st, steps):
            return False
    return True


# Return codes of the step entry points: 0 done; nothing computed and state untouched:
# 1 a NaN/Inf input (with check_finite), 2 an invalid token id (ops/embedding.py),
# 3 a full causal attention past its max_len (ops/causal_attention.py), 4 (step_sequence)
# inputs of the wrong length or layout.
# The input checks are inlined (inline="always"): as calls (with NRT) step_sequence took,
# per compiled call, GRU(1,8)+Linear 399 -> 295 ns, GRU 2L(1,32) 1024 -> 911, LSTM(1,32)
# 482 -> 428 (thread time, A/B in one process, the length/stride check included).
# Without NRT, as step_sequence (below): StreamPool.step of GRU(1,8)+Linear, 32 streams
# 6.92 -> 5.35 us, 1 stream 1.99 -> 1.80; LSTM(16,64) 4 streams 4.81 -> 4.48 (thread time,
# A/B in one process, same floats).
@njit(**BORROWING)
def step_streams(prog, w, mem, x, y, check_finite):
    """One step for n streams: x (n, I) -> y (n, O). Returns 1 (state untouched) on NaN/Inf input.
    Op by op over all streams, so weights are shared between streams while in cache.
    Returns 2 (nothing computed) on an invalid token id."""
    if check_finite and not _all_finite(x):
        return 1
    if not _all_ids_ok(prog, x):
        return 2
    in0 = prog[0, 1]
    I = prog[0, 2]
    out0 = prog[0, 3]
    O = prog[0, 4]
    S = prog[0, 5]
    n = x.shape[0]
    for b in range(n):
        if not _room_ok(prog, mem[b, :S], np.int64(1)):  # int64, as step_sequence passes
            return 3
    for b in range(n):
        xin = mem[b, S + in0:S + in0 + I]
        xb = x[b]
        for j in range(I):
            xin[j] = xb[j]
    tmp = mem[:STREAM_BLOCK]
    for b0 in range(0, n, STREAM_BLOCK):
        blk = mem[b0:min(n, b0 + STREAM_BLOCK)]
        for r in range(1, prog[0, 0] + 1):
            _run_op_streams(prog, r, w, blk, S, tmp)
    for b in range(n):
        yout = mem[b, S + out0:S + out0 + O]
        yb = y[b]
        for j in range(O):
            yb[j] = yout[j]
    return 0


# Without Numba's reference counting (`_nrt=False`): every array slice in the inlined ops
# (dozens a step) otherwise took and dropped a reference with atomic instructions, and the
# entry point wrapped each of its five array arguments in a freshly allocated MemInfo.
# Per step() call, thread time, A/B in one process: GRU(1,8)+Linear 593 -> 360 ns in the
# compiled call, LSTM(1,32) 724 -> 475, LSTM(16,64) 1586 -> 1273, GRU 2L(1,32) 1301 -> 958.
# Safe because the step allocates nothing (no per-step allocation, house rule; an inlined
# op that allocated would not compile without NRT) and the kernels it calls, compiled
# with NRT, treat the arrays it passes (no MemInfo) as borrowed.
# tests/test_step_binding.py checks that a step leaves no NRT allocation behind.
@njit(**BORROWING)
def step_sequence(prog, w, mem, xs, ys, check_finite):
    """T steps of one stream: xs (T * I,) -> ys (T * O,), the steps one after another
    (Stream.step is T = 1; a (T, I) array is passed as its flat view). Returns 1 / 2 / 3
    (nothing computed, state untouched) on a NaN/Inf input / an invalid token id / a full
    causal attention in any step, and 4 (nothing read) when xs is not T steps for the T
    of ys or either is strided: step() leaves its x's length and layout to this check
    (x.shape and x.flags cost ~80 ns a call in Python, measured), and its compiled entry
    point reads a vector as contiguous without looking at its strides."""
    in0 = prog[0, 1]
    I = prog[0, 2]
    out0 = prog[0, 3]
    O = prog[0, 4]
    S = prog[0, 5]
    T = ys.shape[0] // O
    if (xs.shape[0] != T * I or ys.shape[0] != T * O or (xs.shape[0] > 1 and xs.strides[0] != 4)
            or (ys.shape[0] > 1 and ys.strides[0] != 4)):
        return 4
    if check_finite and not _bits_finite(xs.view(np.uint32)):
        return 1
    if not _steps_ids_ok(prog, xs, I):
        return 2
    row = mem[0]
    st = row[:S]
    sc = row[S:]
    if not _room_ok(prog, st, T):
        return 3
    xin = sc[in0:in0 + I]
    yout = sc[out0:out0 + O]
    for t in range(T):
        xt = xs[t * I:(t + 1) * I]
        for j in range(I):
            xin[j] = xt[j]
        for r in range(1, prog[0, 0] + 1):
            _run_op(prog, r, w, st, sc)
        yt = ys[t * O:(t + 1) * O]
        for j in range(O):
            yt[j] = yout[j]
    return 0
