"""The Winograd transforms of one tile written as LLVM IR on vectors of 16 channels or
filters (kernels/winograd.py). The output transform (winograd.output_cell):

    tmp[g*256 + (4r + x)*16 + f] = (A^T m_g A)[r, x] + bias[bo + 16g + f],
    m_g[p] = P[pb + p*ps + 16g + f]  (36 positions p, 4 gates g, 16 filters f)

The same operations in the same order as the Numba version it replaced (fused multiply-adds
where LLVM contracted that one), so the same floats (tests/test_winograd.py). In Numba the
tile's 36 array views per gate, each a slice with clamped bounds, and a vector loop of one
iteration per gate cost more in address arithmetic and spills than the 544 vector
operations per tile: 77 -> ~40 us of thread time per 64x64x16 frame (kernels/winograd.py).
The input transform of 16 channels (winograd.input_transform, h on the benchmark frame):

    V[vo + (6l + k)*kc + ch] = (B^T d B)[l, k],  d[i, j] = src[so + i*rs + j*cs + ch]

straight from the padded frame to V, where the Numba version went through a stack array
and a copy (48 -> ~20 us per 64x64x16 frame).
<16 x float> is one zmm with AVX-512 and two ymm with AVX2 (LLVM splits it); multiply-adds
are llvm.fmuladd, fused where the target has FMA (kernels/gemm_block.py).
"""
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .conv_cell import FB
_F32 = ir.FloatType()
_I64 = ir.IntType(64)


class _Emit:
    """Loads, stores, A^T and B^T on values of `lanes` floats (16: one vector of channels or
    filters; 1: scalars) for one builder."""

    def __init__(self, builder, lanes: int = FB):
        self.b = builder
        self.lanes = lanes
        self.ty = _F32 if lanes == 1 else ir.VectorType(_F32, lanes)
        name = "llvm.fmuladd.f32" if lanes == 1 else f"llvm.fmuladd.v{lanes}f32"
        fnty = ir.FunctionType(self.ty, [self.ty] * 3)
        self.fma_fn = cgutils.get_or_insert_function(builder.module, fnty, name)

    def k(self, v: float):
        v = float(np.float32(v))
        return ir.Constant(self.ty, v if self.lanes == 1 else [v] * self.lanes)

    def fma(self, a, b, c):
        return self.b.call(self.fma_fn, [a, b, c])

    def load(self, base, off):
        p = self.b.gep(base, [off], inbounds=True)
        return self.b.load(self.b.bitcast(p, self.ty.as_pointer()), align=4, typ=self.ty)

    def store(self, v, base, off):
        p = self.b.gep(base, [off], inbounds=True)
        self.b.store(v, self.b.bitcast(p, self.ty.as_pointer()), align=4)

    def at(self, m):
        """A^T m for one line of 6 -> 4 (points 0, 1, -1, 1/2, -2, infinity: winograd.POINTS),
        operation for operation as the Numba _at it replaced."""
        b_, k = self.b, self.k
        a, b = b_.fadd(m[1], m[2]), b_.fsub(m[1], m[2])
        return (b_.fadd(b_.fadd(b_.fadd(a, m[0]), m[3]), m[4]),
                self.fma(k(-2.0), m[4], self.fma(k(0.5), m[3], b)),
                self.fma(k(4.0), m[4], self.fma(k(0.25), m[3], a)),
                b_.fadd(self.fma(k(-8.0), m[4], self.fma(k(0.125), m[3], b)), m[5]))

    def bt(self, d):
        """B^T d for one line of 6 (winograd._bt), operation for operation."""
        b_, k, fma = self.b, self.k, self.fma
        return (b_.fadd(fma(k(1.5), d[3], fma(k(-2.0), d[2], fma(k(-1.5), d[1], d[0]))), d[4]),
                b_.fadd(b_.fsub(fma(k(2.5), d[3], b_.fmul(k(0.5), d[2])), d[1]), d[4]),
                b_.fadd(fma(k(0.5), d[3], fma(k(-2.5), d[2], d[1])), d[4]),
                b_.fadd(fma(k(2.0), b_.fsub(d[3], d[1]), b_.fneg(d[2])), d[4]),
                b_.fadd(fma(k(0.5), b_.fsub(d[1], d[3]), b_.fneg(d[2])), d[4]),
                b_.fadd(fma(k(1.5), d[4], fma(k(-2.0), d[3], fma(k(-1.5), d[2], d[1]))), d[5]))


def _input_codegen(lanes):
    def codegen(context, builder, sig, args):
        src, so, cs, rs, V, vo, kc = args
        ps, pv = [context.make_array(sig.args[i])(context, builder, args[i]).data for i in (0, 4)]
        e = _Emit(builder, lanes)
        mul, add = builder.mul, builder.add
        rows = []
        for i in range(6):
            ri = add(so, mul(ir.Constant(_I64, i), rs))
            rows.append(e.bt([e.load(ps, add(ri, mul(ir.Constant(_I64, j), cs)))
                              for j in range(6)]))
        for k in range(6):
            for l, v in enumerate(e.bt([rows[i][k] for i in range(6)])):
                e.store(v, pv, add(vo, mul(ir.Constant(_I64, 6 * l + k), kc)))
        return context.get_dummy_value()
    return codegen


@intrinsic
def tile_input16(typingctx, src, so, cs, rs, V, vo, kc):
    """B^T d B of one tile's 6x6 patch for 16 channels into V, see the module doc."""
    return types.void(src, so, cs, rs, V, vo, kc), _input_codegen(FB)


@intrinsic
def tile_input1(typingctx, src, so, cs, rs, V, vo, kc):
    """tile_input16 for one channel (scalars: the frame's input, often 1 channel)."""
    return types.void(src, so, cs, rs, V, vo, kc), _input_codegen(1)


def _codegen(context, builder, sig, args):
    P, pb, ps, bias, bo, tmp = args
    pP, pbias, pt = [context.make_array(sig.args[i])(context, builder, args[i]).data for i in (0, 3, 5)]
    e = _Emit(builder)

    def off(base, k):
        return builder.add(base, ir.Constant(_I64, k)) if k else base

    pos = [builder.add(pb, builder.mul(ir.Constant(_I64, p), ps)) for p in range(36)]
    for g in range(4):
        m = [e.load(pP, off(pos[p], FB * g)) for p in range(36)]
        rows = [e.at(m[6 * a:6 * a + 6]) for a in range(6)]     # along the tile's columns
        bg = e.load(pbias, off(bo, FB * g))
        for x in range(4):
            for r, v in enumerate(e.at([rows[a][x] for a in range(6)])):
                e.store(builder.fadd(v, bg), pt, ir.Constant(_I64, g * 16 * FB + (4 * r + x) * FB))
    return context.get_dummy_value()


@intrinsic
def tile_gates(typingctx, P, pb, ps, bias, bo, tmp):
    """Gates of one tile and 64-column panel into tmp (1024 floats), see the module doc."""
    return types.void(P, pb, ps, bias, bo, tmp), _codegen
