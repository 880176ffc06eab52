"""Matrix-vector and matrix-matrix products over the flat float32 weight arena.

Weight matrices are stored (in, out) row-major, i.e. the transpose of PyTorch's
(out, in) `weight`, so a matrix-vector product is a sum of scaled rows (axpy), the loop
order LLVM vectorises best. int8 matrices are packed into the same arena and read
through `w.view(np.int8)`, with per-column float32 scales (lstm_infer/quantize.py).
"""
import numpy as np
from numba import carray, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import BORROWING, KERNEL
from .narrow_ir import NARROW_MAX, narrow_rows
from .q16 import matvec_q16

# Columns per panel of a packed matrix (pack_panels): 64 float32 accumulators are 4 zmm or
# 8 ymm registers, and a panel row is one 256-byte contiguous read.
PANEL = 64


@njit(**BORROWING)
def matvec_acc(out, x, w, w_off, rows, cols):
    """out[j] += sum_k x[k] * W[k, j] with W = w[w_off : w_off + rows*cols] as (rows, cols)."""
    matvec_f32(out, x, w, w_off, rows, cols, np.int64(0), cols)


@njit(**BORROWING)
def matvec_cols(out, x, w, w_off, rows, stride, c0, n):
    """out[j] += sum_k x[k] * W[k, c0 + j], j < n, for W (rows, stride) at w[w_off:].

    Four rows of W per pass: out is loaded and stored once per four rows, which
    matters because the loop is bound by cache bandwidth, not arithmetic. Rows are
    sliced before the loop so every index is `j`, which Numba knows is >= 0: an index
    like `w[base + j]` gets a negative-index wrap-around check that turns the
    vector load into a gather (4-5x slower, measured)."""
    k = 0
    while k + 4 <= rows:
        x0 = x[k]
        x1 = x[k + 1]
        x2 = x[k + 2]
        x3 = x[k + 3]
        b0 = w_off + k * stride + c0
        r0 = w[b0:b0 + n]
        r1 = w[b0 + stride:b0 + stride + n]
        r2 = w[b0 + 2 * stride:b0 + 2 * stride + n]
        r3 = w[b0 + 3 * stride:b0 + 3 * stride + n]
        for j in range(n):
            out[j] += x0 * r0[j] + x1 * r1[j] + x2 * r2[j] + x3 * r3[j]
        k += 4
    while k < rows:
        xk = x[k]
        b0 = w_off + k * stride + c0
        r0 = w[b0:b0 + n]
        for j in range(n):
            out[j] += xk * r0[j]
        k += 1


@intrinsic
def _stack_f32(typingctx, n):
    """A fixed-size float32 scratch on the stack. LLVM promotes it to registers when every
    index is a constant after unrolling, which a heap array (np.empty) never is."""
    def impl(context, builder, sig, args):
        return cgutils.alloca_once(builder, context.get_value_type(types.float32), size=args[0])
    return types.CPointer(types.float32)(n), impl


def aligned(a: np.ndarray, align: int = 64) -> np.ndarray:
    """A C-contiguous copy of `a` starting on an `align`-byte boundary (a cache line; one
    zmm load then never straddles two lines). numpy's own arrays start 16 bytes past one
    here (malloc), so every panel row of a weight arena was read split: matvec_packed
    64x256 0.65 -> 0.52 us, 128x512 2.52 -> 2.34, 256x1024 10.6 -> 9.9 aligned."""
    out = aligned_empty(a.shape, a.dtype, align)
    out[...] = a
    return out


def aligned_empty(shape, dtype, align: int = 64) -> np.ndarray:
    """An uninitialised C-contiguous array starting on an `align`-byte boundary."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    buf = np.empty(nbytes + align, np.uint8)
    start = (-buf.ctypes.data) % align
    return buf[start:start + nbytes].view(dtype).reshape(shape)


def pack_panels(W: np.ndarray) -> np.ndarray:
    """W (rows, cols) -> flat float32: full panels of PANEL columns, each (rows, PANEL)
    row-major, one after another, then the last cols % PANEL columns as (rows, rest).
    matvec_packed reads one contiguous stream per panel instead of four strided rows."""
    W = np.asarray(W, np.float32)
    rows, cols = W.shape
    full = cols - cols % PANEL
    parts = [W[:, :full].reshape(rows, full // PANEL, PANEL).transpose(1, 0, 2).ravel(),
             W[:, full:].ravel()]
    return aligned(np.concatenate(parts))


@njit(inline="always", **KERNEL)
def _panel_mv(out, x, w, p_off, rows, q, acc):
    """Panel q of matvec_packed: out[q*PANEL + j] += sum_k x[k] * W[k, q*PANEL + j]."""
    o = out[q * PANEL:(q + 1) * PANEL]
    for j in range(PANEL):
        acc[j] = o[j]
    base = p_off + q * rows * PANEL
    k = 0
    while k + 4 <= rows:
        x0 = x[k]
        x1 = x[k + 1]
        x2 = x[k + 2]
        x3 = x[k + 3]
        blk = w[base + k * PANEL:base + (k + 4) * PANEL]
        for j in range(PANEL):
            acc[j] += (x0 * blk[j] + x1 * blk[PANEL + j] + x2 * blk[2 * PANEL + j]
                       + x3 * blk[3 * PANEL + j])
        k += 4
    while k < rows:
        xk = x[k]
        blk = w[base + k * PANEL:base + (k + 1) * PANEL]
        for j in range(PANEL):
            acc[j] += xk * blk[j]
        k += 1
    for j in range(PANEL):
        o[j] = acc[j]


@njit(**KERNEL)
def matvec_packed(out, x, w, p_off, rows, cols):
    """out[j] += sum_k x[k] * W[k, j] for W packed by pack_panels at w[p_off:].

    The same sums in the same order as matvec_cols (four rows at a time, then the rest), so
    the result is bit-identical; the PANEL partial sums of a panel stay in registers over
    all rows and the panel is read as one stream: 15-20% faster on 64x256 to 512x2048
    (0.77 -> 0.62 us, 3.0 -> 2.5 us on 128x512; about the L2 read rate, benchmarks/peak.py)."""
    acc = carray(_stack_f32(PANEL), PANEL)
    npan = cols // PANEL
    for q in range(npan):
        _panel_mv(out, x, w, p_off, rows, q, acc)
    rest = cols - npan * PANEL
    if rest > 0:
        matvec_f32(out[npan * PANEL:cols], x, w, p_off + npan * PANEL * rows, rows, rest, np.int64(0), rest)


@njit(**KERNEL)
def matvec_packed_snake(out, x, w, p_off, rows, cols, backward):
    """matvec_packed with the panels in reverse order when `backward` (the same floats: the
    panels are independent columns). A recurrence that alternates the direction from step
    to step first reads the panels it read last, still in L2, instead of the ones LRU-like
    replacement evicted first: a 1 MB W_hh (256x1024, as big as Zen 4's L2) 12.1 -> 10.5 us
    per mat-vec, 87 -> 100 GB/s; no change at 64x256 (in L2) and 512x2048 (4 MB, L3)."""
    acc = carray(_stack_f32(PANEL), PANEL)
    npan = cols // PANEL
    for i in range(npan):
        _panel_mv(out, x, w, p_off, rows, npan - 1 - i if backward else i, acc)
    rest = cols - npan * PANEL
    if rest > 0:
        matvec_f32(out[npan * PANEL:cols], x, w, p_off + npan * PANEL * rows, rows, rest, np.int64(0), rest)


def _has_wide_vectors() -> bool:
    """AVX-512 on the CPU Numba compiles for: 32 vector registers of 16 floats."""
    from numba import config
    from llvmlite import binding as ll
    if config.CPU_NAME or config.CPU_FEATURES:  # an explicit target: keep the portable kernel
        return False
    return ll.get_host_cpu_features().get("avx512f", False)


# matmat_packed keeps 4 vectors x 64 columns of sums in registers: 16 zmm of AVX-512's 32,
# 32 ymm on AVX2, which has 16, so there it spills and was slower than matmat_acc (35-45 vs
# 50-60 GFLOP/s, B=4..32, 64x256..512x2048, compiled for haswell); with AVX-512 it was
# faster (78-89 vs 45-79 GFLOP/s). A module constant, so Numba compiles one branch only.
WIDE_VECTORS = _has_wide_vectors()


@njit(inline="always", **KERNEL)
def _load4(out, b, c, n, a0, a1, a2, a3):
    """Rows b..b+3 of out, columns [c, c+n), copied into the register-blocked sums a0..a3;
    returns the four row views for _store4."""
    o0 = out[b, c:c + n]
    o1 = out[b + 1, c:c + n]
    o2 = out[b + 2, c:c + n]
    o3 = out[b + 3, c:c + n]
    for j in range(n):
        a0[j] = o0[j]
        a1[j] = o1[j]
        a2[j] = o2[j]
        a3[j] = o3[j]
    return o0, o1, o2, o3


@njit(inline="always", **KERNEL)
def _store4(o0, o1, o2, o3, a0, a1, a2, a3, n):
    for j in range(n):
        o0[j] = a0[j]
        o1[j] = a1[j]
        o2[j] = a2[j]
        o3[j] = a3[j]


@njit(**KERNEL)
def matmat_packed(out, o_off, x, x_off, w, p_off, rows, cols):
    """matmat_acc for W packed by pack_panels at w[p_off:]: out[b, o_off + j] += sum_k
    x[b, x_off + k] * W[k, j]. Four vectors x one panel of sums stay in registers over all
    rows; per output the same sums in the same order as matvec_cols (bit-identical)."""
    a0 = carray(_stack_f32(PANEL), PANEL)
    a1 = carray(_stack_f32(PANEL), PANEL)
    a2 = carray(_stack_f32(PANEL), PANEL)
    a3 = carray(_stack_f32(PANEL), PANEL)
    nb = x.shape[0]
    npan = cols // PANEL
    for q in range(npan):
        base = p_off + q * rows * PANEL
        c = o_off + q * PANEL
        b = 0
        while b + 4 <= nb:
            o0, o1, o2, o3 = _load4(out, b, c, PANEL, a0, a1, a2, a3)
            _rows_acc4(a0, a1, a2, a3, x, b, x_off, w, base, PANEL, rows, PANEL)
            _store4(o0, o1, o2, o3, a0, a1, a2, a3, PANEL)
            b += 4
        while b < nb:
            matvec_f32(out[b, c:c + PANEL], x[b, x_off:x_off + rows], w, base, rows, np.int64(PANEL), np.int64(0), np.int64(PANEL))
            b += 1
    rest = cols - npan * PANEL
    if rest > 0:
        for b in range(nb):
            matvec_f32(out[b, o_off + npan * PANEL:o_off + cols], x[b, x_off:x_off + rows], w,
                        p_off + npan * PANEL * rows, rows, rest, np.int64(0), rest)


@njit(inline="always", **KERNEL)
def _rows_acc4(a0, a1, a2, a3, x, b, x_off, w, base, stride, rows, n):
    """a0..a3[j] += sum_k x[b + i, x_off + k] * w[base + k*stride + j], j < n: four vectors
    times the rows of a matrix slice, four rows at a time, then the rest one by one
    (matvec_cols's order). Shared by matmat_acc (a0..a3 are out's rows), matmat_packed
    (one packed panel, stride = n = PANEL, sums in stack scratch) and matmat_narrow."""
    k = 0
    while k + 4 <= rows:
        b0 = base + k * stride
        r0 = w[b0:b0 + n]
        r1 = w[b0 + stride:b0 + stride + n]
        r2 = w[b0 + 2 * stride:b0 + 2 * stride + n]
        r3 = w[b0 + 3 * stride:b0 + 3 * stride + n]
        xk = x_off + k
        p0, p1, p2, p3 = x[b, xk], x[b, xk + 1], x[b, xk + 2], x[b, xk + 3]
        q0, q1, q2, q3 = x[b + 1, xk], x[b + 1, xk + 1], x[b + 1, xk + 2], x[b + 1, xk + 3]
        s0, s1, s2, s3 = x[b + 2, xk], x[b + 2, xk + 1], x[b + 2, xk + 2], x[b + 2, xk + 3]
        t0, t1, t2, t3 = x[b + 3, xk], x[b + 3, xk + 1], x[b + 3, xk + 2], x[b + 3, xk + 3]
        for j in range(n):
            u = r0[j]
            v = r1[j]
            y = r2[j]
            z = r3[j]
            a0[j] += p0 * u + p1 * v + p2 * y + p3 * z
            a1[j] += q0 * u + q1 * v + q2 * y + q3 * z
            a2[j] += s0 * u + s1 * v + s2 * y + s3 * z
            a3[j] += t0 * u + t1 * v + t2 * y + t3 * z
        k += 4
    while k < rows:
        r0 = w[base + k * stride:base + k * stride + n]
        xk = x_off + k
        p0, q0, s0, t0 = x[b, xk], x[b + 1, xk], x[b + 2, xk], x[b + 3, xk]
        for j in range(n):
            u = r0[j]
            a0[j] += p0 * u
            a1[j] += q0 * u
            a2[j] += s0 * u
            a3[j] += t0 * u
        k += 1


@njit(**KERNEL)
def matmat_w_hh(out, o_off, x, x_off, w, w_off, p_off, rows, cols):
    """A batch times a recurrent matrix: the packed kernel with AVX-512 (p_off >= 0), else
    matmat_acc on the row-major copy at w[w_off:]. Same floats either way. Under PANEL
    columns the packed kernel has no full panel and goes row by row, so matmat_acc."""
    if WIDE_VECTORS and p_off >= 0 and cols >= PANEL:
        matmat_packed(out, o_off, x, x_off, w, p_off, rows, cols)
    else:
        matmat_acc(out, o_off, x, x_off, w, w_off, rows, cols)


@njit(**KERNEL)
def matmat_acc(out, o_off, x, x_off, w, w_off, rows, cols):
    """out[b, o_off + j] += sum_k x[b, x_off + k] * W[k, j] for every row b: several vectors
    times one float32 matrix W (rows, cols) at w[w_off:].

    Four vectors share each weight load (4-5x less weight traffic than one mat-vec per
    vector; 2-4x faster measured), and each vector's sums are formed in exactly
    matvec_cols's order, so the result is bit-identical to calling it row by row."""
    nb = x.shape[0]
    b = 0
    while b + 4 <= nb:
        o0 = out[b, o_off:o_off + cols]
        o1 = out[b + 1, o_off:o_off + cols]
        o2 = out[b + 2, o_off:o_off + cols]
        o3 = out[b + 3, o_off:o_off + cols]
        _rows_acc4(o0, o1, o2, o3, x, b, x_off, w, w_off, cols, rows, cols)
        b += 4
    while b < nb:
        matvec_f32(out[b, o_off:o_off + cols], x[b, x_off:x_off + rows], w, w_off, rows, cols, 0, cols)
        b += 1


# Columns per chunk of matmat_narrow: 4 vectors x 16 sums are 4 zmm, or 8 ymm of AVX2's 16.
NARROW = 16


@njit(**KERNEL)
def matmat_narrow(out, o_off, x, x_off, w, w_off, rows, cols):
    """matmat_acc for a matrix under PANEL columns (a Linear head of 16 outputs): four
    vectors x NARROW columns of sums kept in registers (stack scratch) over all rows, per
    output the same sums in the same order as matvec_cols (bit-identical). matmat_acc's
    column loop is LLVM's 64-wide vector loop, so 16 columns ran its scalar remainder, and
    it reloads and stores its sums every four rows (out may alias x): 4096 x (64 -> 16)
    308 -> 114 us, (64 -> 32) 425 -> 231, (64 -> 48) 458 -> 334 (thread time, blocks of 32
    vectors). Columns past the last whole NARROW, and vectors past the last four, by matvec_cols."""
    a0 = carray(_stack_f32(NARROW), NARROW)
    a1 = carray(_stack_f32(NARROW), NARROW)
    a2 = carray(_stack_f32(NARROW), NARROW)
    a3 = carray(_stack_f32(NARROW), NARROW)
    nb = x.shape[0]
    V = NARROW
    b = 0
    while b + 4 <= nb:
        for c in range(0, cols - cols % V, V):
            o0, o1, o2, o3 = _load4(out, b, o_off + c, V, a0, a1, a2, a3)
            _rows_acc4(a0, a1, a2, a3, x, b, x_off, w, w_off + c, cols, rows, V)
            _store4(o0, o1, o2, o3, a0, a1, a2, a3, V)
        b += 4
    rest = cols % V
    for i in range(nb):
        if i >= b:
            matvec_f32(out[i, o_off:o_off + cols], x[i, x_off:x_off + rows], w, w_off, rows, cols,
                        np.int64(0), cols)
        elif rest > 0:
            c = cols - rest
            matvec_f32(out[i, o_off + c:o_off + cols], x[i, x_off:x_off + rows], w, w_off, rows,
                        cols, c, rest)


@njit(**KERNEL)
def matvec_q8(out, x, w, q_off, s_off, rows, stride, c0, n, acc):
    """Like matvec_cols for an int8 matrix Q (bytes at q_off in w viewed as int8) with
    per-column scales s (floats at w[s_off:]): out[j] += s[c0+j] * sum_k x[k] * Q[k, c0+j].
    Dequantised on the fly; `acc` is n floats of scratch."""
    q = w.view(np.int8)
    for j in range(n):
        acc[j] = np.float32(0.0)
    k = 0
    while k + 4 <= rows:
        x0 = x[k]
        x1 = x[k + 1]
        x2 = x[k + 2]
        x3 = x[k + 3]
        b0 = q_off + k * stride + c0
        r0 = q[b0:b0 + n]
        r1 = q[b0 + stride:b0 + stride + n]
        r2 = q[b0 + 2 * stride:b0 + 2 * stride + n]
        r3 = q[b0 + 3 * stride:b0 + 3 * stride + n]
        for j in range(n):
            acc[j] += (x0 * np.float32(r0[j]) + x1 * np.float32(r1[j])
                       + x2 * np.float32(r2[j]) + x3 * np.float32(r3[j]))
        k += 4
    while k < rows:
        xk = x[k]
        b0 = q_off + k * stride + c0
        r0 = q[b0:b0 + n]
        for j in range(n):
            acc[j] += xk * np.float32(r0[j])
        k += 1
    sc = w[s_off + c0:s_off + c0 + n]
    for j in range(n):
        out[j] += sc[j] * acc[j]


@njit(**BORROWING)
def mv(out, x, w, off, s_off, rows, stride, c0, n, acc):
    """Mat-vec over columns [c0, c0+n) of a float32 (s_off < 0) or int8 matrix. int8: integer
    dot products on its packed copy (kernels/q16.py; `acc` is q16.scratch_floats of scratch),
    or, for an input that is not finite, matvec_q8 on the plain one at byte `off`."""
    if s_off < 0:
        matvec_f32(out, x, w, off, rows, stride, c0, n)
    elif not matvec_q16(out, x, w, s_off, rows, stride, c0, n, acc):
        matvec_q8(out, x, w, off, s_off, rows, stride, c0, n, acc)


@njit(**BORROWING)
def matvec_f32(out, x, w, w_off, rows, stride, c0, n):
    """matvec_cols, the same floats; up to NARROW_MAX columns as narrow_ir.narrow_rows, with
    its sums in registers: a 64 -> 16 Linear head 116 -> 41 ns, 64 -> 1 71 -> 40, 64x64
    248 -> 132 (AVX-512; AVX2 107 -> 56, 63 -> 44, 167 -> 123; 16x64 46 -> 53 its one loss)."""
    if n <= NARROW_MAX and out.strides[0] == 4 and x.strides[0] == 4:
        narrow_rows(out, x, w, w_off + c0, rows, stride, n)
    else:
        matvec_cols(out, x, w, w_off, rows, stride, c0, n)


@njit(**BORROWING)
def set_bias(out, w, b_off, n):
    """out[:n] = bias, or zeros when b_off < 0 (no bias)."""
    fill_bias(out, w, b_off, n)


@njit(inline="always", **KERNEL)
def fill_bias(out, w, b_off, n):
    """set_bias inlined, for loops over many streams (a call per stream and vector cost
    ~25 ns at 3H = 192, ops/gru.step_streams)."""
    if b_off < 0:
        for j in range(n):
            out[j] = np.float32(0.0)
    else:
        b = w[b_off:b_off + n]
        for j in range(n):
            out[j] = b[j]




@njit(inline="always", **KERNEL)
def panel_block_acc(acc, x, xb, xs, nb, w, wb, K):
    """acc[b*PANEL + j] += sum_k x[xb + b*xs + k] * w[wb + k*PANEL + j], j < PANEL, for b < nb
    (nb = 4, or 1 at a row's end): four input rows x one packed 64-column panel of sums kept
    in registers over the K rows (16 zmm with AVX-512), for the ConvLSTM's direct
    convolution (ops/conv_lstm._conv_acc). (The Winograd products, with only K = C + F
    rows per block, use kernels/gemm_block.py, which skips this stack array.)"""
    if nb == 4:
        x0 = x[xb:xb + K]
        x1 = x[xb + xs:xb + xs + K]
        x2 = x[xb + 2 * xs:xb + 2 * xs + K]
        x3 = x[xb + 3 * xs:xb + 3 * xs + K]
        for k in range(K):
            wr = w[wb + k * PANEL:wb + (k + 1) * PANEL]
            a0 = x0[k]
            a1 = x1[k]
            a2 = x2[k]
            a3 = x3[k]
            for j in range(PANEL):
                v = wr[j]
                acc[j] += a0 * v
                acc[PANEL + j] += a1 * v
                acc[2 * PANEL + j] += a2 * v
                acc[3 * PANEL + j] += a3 * v
    else:
        x0 = x[xb:xb + K]
        for k in range(K):
            wr = w[wb + k * PANEL:wb + (k + 1) * PANEL]
            a0 = x0[k]
            for j in range(PANEL):
                acc[j] += a0 * wr[j]
