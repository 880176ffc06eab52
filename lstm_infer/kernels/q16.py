"""int8 mat-vec as integer dot products: the input vector quantised to int16, the weights'
int8 widened to int16 in registers, sums of pairs of products in int32 (x86 pmaddwd).

Dequantising every weight to float (linalg.matvec_q8: int8 -> int32 -> float32 convert and
an FMA per weight, ~3 vector ops per 16 multiply-adds) made the int8 mat-vec compute-bound
and no faster than fp32. Here one `vpmaddwd` (AVX-512BW: 32 multiply-adds; with AVX-512
VNNI LLVM fuses it with the add into `vpdpwssd`) or two (AVX2, ymm) and one `vpmovsxbw`
cover 16 columns x 2 rows: 256x2048 20.4 -> 7.0 us, 512x2048 40.7 -> 14.5 us per mat-vec
(Zen 4, AVX-512, thread time, same process).

Numerics (exact up to the two roundings named here): v is quantised per call with one
scale, s_v = max|v| / 32767, q16 = rint(v / s_v) (relative error <= 1.5e-5 of max|v|, two
orders below int8 weights' ~1e-3); the int32 sums are exact; then
out[j] += (s[j] * s_v) * float32(acc[j]). |Q| <= 127 and |q16| <= 32767, so 256 pairs of
rows (512 rows) sum to at most 512 * 32767 * 127 = 2,130,640,384 < 2^31 - 1: the int32 sums
are flushed to `out` every BLOCK_PAIRS pairs. A non-finite v (inf, nan) has no int16 scale,
nor has a v whose largest entry is under 1e-30 (32767 / max|v| overflows float32): the
caller (linalg.mv) falls back to the float kernel, which propagates inf and nan as fp32 does.

Layout of the packed copy (pack_pairs), built at load into the weight arena right after the
matrix's scales (plan._Arena.scale): columns padded to a multiple of 16, rows to even;
panels of PANEL_Q = 64 columns, then one panel of the remaining 0/16/32/48; a panel is
(pairs, width, 2) row-major, byte [p, j, t] = Q[2p + t, c + j]: a row pair of one column is
the two adjacent int16 lanes pmaddwd multiplies with (v[2p], v[2p+1]), and a panel is one
contiguous stream (row pairs interleaved across all columns, one 4 KB stride per pair,
ran 2.7x slower: 512x2048 40 vs 15 us).

The instruction is chosen from the features Numba compiles for (NUMBA_CPU_FEATURES, else
the host's): AVX-512BW, AVX2, SSE2, else plain LLVM vector IR (any target, slower).
"""
import numpy as np
from llvmlite import ir
from numba import config, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import KERNEL

PANEL_Q = 64        # columns per packed panel: 4 zmm (8 ymm) int32 sums kept in registers
GROUP = 16          # columns per <32 x i8> load: one zmm of int32 sums
BLOCK_PAIRS = 256   # row pairs summed in int32 before a flush (overflow bound, above)
Q16_MAX = 32767.0


def _compile_features() -> set[str]:
    """The CPU features Numba generates code for (what its JIT target machine uses)."""
    from llvmlite import binding as ll
    f = config.CPU_FEATURES if config.CPU_FEATURES is not None else ll.get_host_cpu_features().flatten()
    return {x[1:] for x in f.split(",") if x.startswith("+")}


_FEATURES = _compile_features()
_I8x32 = ir.VectorType(ir.IntType(8), 32)
_I16x32 = ir.VectorType(ir.IntType(16), 32)
_I32x16 = ir.VectorType(ir.IntType(32), 16)


def _lanes(n: int, start: int = 0, step: int = 1) -> ir.Constant:
    return ir.Constant(ir.VectorType(ir.IntType(32), n), [start + step * i for i in range(n)])


def _call(builder, name: str, rty, args):
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(rty, [a.type for a in args]), name)
    return builder.call(fn, args)


def _pmadd(builder, a, b):
    """<16 x i32>: a[2i]*b[2i] + a[2i+1]*b[2i+1] for a, b <32 x i16>."""
    if "avx512bw" in _FEATURES:
        return _call(builder, "llvm.x86.avx512.pmaddw.d.512", _I32x16, [a, b])
    if "avx2" in _FEATURES or "sse2" in _FEATURES:
        n, name = (2, "llvm.x86.avx2.pmadd.wd") if "avx2" in _FEATURES else (4, "llvm.x86.sse2.pmadd.wd")
        m = 32 // n
        undef = ir.Constant(_I16x32, ir.Undefined)
        parts = [_call(builder, name, ir.VectorType(ir.IntType(32), m // 2),
                       [builder.shuffle_vector(a, undef, _lanes(m, i * m)),
                        builder.shuffle_vector(b, undef, _lanes(m, i * m))]) for i in range(n)]
        while len(parts) > 1:
            k = parts[0].type.count
            parts = [builder.shuffle_vector(x, y, _lanes(2 * k)) for x, y in zip(parts[0::2], parts[1::2])]
        return parts[0]
    # Any other target: the same sums in plain IR. x86 ISel does not match it to pmaddwd when b
    # is a splat of a pair (it emitted vpmulld: 512x2048 52 vs 40 us, both unpanelled).
    undef = ir.Constant(_I16x32, ir.Undefined)
    ev, od = _lanes(16, 0, 2), _lanes(16, 1, 2)
    prod = [builder.mul(builder.sext(builder.shuffle_vector(a, undef, s), _I32x16),
                        builder.sext(builder.shuffle_vector(b, undef, s), _I32x16)) for s in (ev, od)]
    return builder.add(*prod)


@intrinsic
def _panel_sums(typingctx, acc, q, q_off, stride, v, p0, npairs, nvec):
    """acc[16u + j] = sum_{p < npairs} Q16[p0 + p, j] . v[p0 + p] for u < nvec (a literal: 4
    for a whole panel, 1 for 16 columns): int8 pairs at q[q_off + p * stride + 32u:] widened
    to int16, v int32 = the int16 pair (v[2p], v[2p+1]). The sums live in registers over the
    loop (entry allocas, promoted by LLVM) and are stored once at the end."""
    if not isinstance(nvec, types.IntegerLiteral):
        return None
    U = nvec.literal_value
    sig = types.void(acc, q, q_off, stride, v, p0, npairs, nvec)

    def codegen(context, builder, sig, args):
        accp = builder.bitcast(args[0], _I32x16.as_pointer())
        qp = context.make_array(sig.args[1])(context, builder, args[1]).data
        vp = context.make_array(sig.args[4])(context, builder, args[4]).data
        q_off, stride, p0, npairs = args[2], args[3], args[5], args[6]
        sums = []
        for _ in range(U):
            slot = cgutils.alloca_once(builder, _I32x16)
            builder.store(ir.Constant(_I32x16, None), slot)
            sums.append(slot)
        undef = ir.Constant(_I32x16, ir.Undefined)
        with cgutils.for_range(builder, npairs) as loop:
            p = builder.add(p0, loop.index)
            pair = builder.load(builder.gep(vp, [p]))
            splat = builder.shuffle_vector(builder.insert_element(undef, pair, ir.Constant(ir.IntType(32), 0)),
                                           undef, ir.Constant(_I32x16, [0] * 16))
            s16 = builder.bitcast(splat, _I16x32)
            base = builder.add(q_off, builder.mul(p, stride))
            for u in range(U):
                ptr = builder.gep(qp, [builder.add(base, ir.Constant(base.type, 32 * u))])
                w16 = builder.sext(builder.load(builder.bitcast(ptr, _I8x32.as_pointer()), align=1), _I16x32)
                builder.store(builder.add(builder.load(sums[u]), _pmadd(builder, w16, s16)), sums[u])
        for u in range(U):
            builder.store(builder.load(sums[u]), builder.gep(accp, [ir.Constant(ir.IntType(64), u)]), align=4)
        return context.get_dummy_value()
    return sig, codegen


@intrinsic
def _stack_i32(typingctx, n):
    """PANEL_Q int32 of stack scratch (as linalg._stack_f32)."""
    def impl(context, builder, sig, args):
        return cgutils.alloca_once(builder, ir.IntType(32), size=args[0])
    return types.CPointer(types.int32)(n), impl


def pack_pairs(Q: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """int8 Q (rows, cols) -> the flat int8 layout above (module docstring), written into
    `out` (zeros, at least packed_bytes(Q.shape) long) or a new array. Strided copies panel
    by panel, no whole-matrix temporaries: those left 4 MB of freed heap in the process's
    resident memory after loading a 1.5 MB int8 model (glibc keeps it)."""
    rows, cols = Q.shape
    pairs, c16 = (rows + 1) // 2, packed_start(cols)
    out = np.zeros(packed_bytes(Q.shape), np.int8) if out is None else out
    pos = 0
    for c in range(0, c16, PANEL_Q):
        width = min(PANEL_Q, c16 - c)
        panel = out[pos:pos + 2 * pairs * width].reshape(pairs, width, 2)
        for t in range(2):
            src = Q[t::2, c:c + width]
            panel[:src.shape[0], :src.shape[1], t] = src
        pos += 2 * pairs * width
    return out


def packed_bytes(shape: tuple[int, int]) -> int:
    return 2 * ((shape[0] + 1) // 2) * packed_start(shape[1])


def q16_block(Q: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """What the arena holds for an int8 matrix's scales: the scales, zeros up to a multiple of
    16 floats (64 bytes), then pack_pairs(Q) as raw bytes padded to whole floats. The
    kernels find the packed bytes at 4 * (s_off + packed_start(cols))."""
    block = np.zeros(q16_block_floats(Q.shape), np.float32)
    fill_q16_block(block, Q, scales)
    return block


def q16_block_floats(shape: tuple[int, int]) -> int:
    return packed_start(shape[1]) + -(-packed_bytes(shape) // 64) * 16


def fill_q16_block(block: np.ndarray, Q: np.ndarray, scales: np.ndarray) -> None:
    """Write q16_block(Q, scales) into `block` (q16_block_floats floats): how plan.py builds
    it in place in the arena, with no block-sized temporary."""
    start = packed_start(Q.shape[1])
    block[:] = 0.0
    block[:scales.size] = scales
    pack_pairs(Q, block[start:].view(np.int8))


def packed_start(cols: int) -> int:
    return -(-cols // GROUP) * GROUP


def scratch_floats(node, n: int, *rows: int) -> int:
    """Floats of mat-vec scratch an op's row gets: n (matvec_q8's sums), and for int8 weights
    also room for matvec_q16's int16 copy of an input of each of `rows` sizes."""
    return max([n] + [(r + 1) // 2 + 1 for r in rows]) if node.quantized else n


@njit(**KERNEL)
def matvec_q16(out, x, w, s_off, rows, stride, c0, n, scratch):
    """out[j] += s[c0+j] * s_v * sum_k q16(x)[k] * Q[k, c0+j], j < n, for the int8 matrix
    Q (rows, stride) packed after its scales at w[s_off:] (q16_block). Returns False, having
    done nothing, when x is not finite or all below 1e-30 (no float32 int16 scale; the caller
    uses the float kernel).
    `scratch`: scratch_floats(node, n, rows) floats."""
    m = np.float32(0.0)
    bad = False
    for k in range(rows):
        a = abs(x[k])
        bad |= not (a <= np.float32(3.0e38))
        m = max(m, a)
    if m == np.float32(0.0):
        return True  # every product is 0
    if bad or m < np.float32(1e-30):  # 32767 / m would overflow float32 for denormal m
        return False
    pairs = (rows + 1) // 2
    v16 = scratch.view(np.int16)
    inv = np.float32(Q16_MAX) / m
    for k in range(rows):
        v16[k] = np.int16(min(max(np.rint(x[k] * inv), np.float32(-Q16_MAX)), np.float32(Q16_MAX)))
    if rows % 2 == 1:
        v16[rows] = np.int16(0)
    vp = scratch.view(np.int32)
    s_v = m / np.float32(Q16_MAX)
    sc = w[s_off + c0:s_off + c0 + n]
    q = w.view(np.int8)
    q0 = 4 * (s_off + -(-stride // GROUP) * GROUP)
    c16 = -(-stride // GROUP) * GROUP
    nfull = c16 // PANEL_Q
    rest = c16 - nfull * PANEL_Q
    acc = _stack_i32(PANEL_Q)
    g = c0 // GROUP
    g_end = (c0 + n + GROUP - 1) // GROUP
    while g < g_end:
        panel = g * GROUP // PANEL_Q
        whole = g % 4 == 0 and g + 4 <= g_end and panel < nfull
        col = g * GROUP
        if panel < nfull:
            base = q0 + panel * pairs * 2 * PANEL_Q + 2 * (col - panel * PANEL_Q)
            pstride = 2 * PANEL_Q
        else:
            base = q0 + nfull * pairs * 2 * PANEL_Q + 2 * (col - nfull * PANEL_Q)
            pstride = 2 * rest
        width = PANEL_Q if whole else GROUP
        lo = max(col, c0) - c0
        hi = min(col + width, c0 + n) - c0
        for p0 in range(0, pairs, BLOCK_PAIRS):
            np_ = min(BLOCK_PAIRS, pairs - p0)
            if whole:
                _panel_sums(acc, q, base, pstride, vp, p0, np_, 4)
            else:
                _panel_sums(acc, q, base, pstride, vp, p0, np_, 1)
            for j in range(lo, hi):
                out[j] += (sc[j] * s_v) * np.float32(acc[j + c0 - col])
        g += 4 if whole else 1
    return True
