"""A register-blocked GEMM microkernel written as LLVM IR: rows x one 64-column panel.

    out[o + b*os + j] = sum_k x[xo + b*xs + k] * w[wo + k*64 + j],  b < rows, j < 64

The Winograd products (kernels/winograd.py) are 36 small GEMMs per row of tiles with only
K = C + F rows (17 on the benchmark frame), so the fixed cost of a register block weighs a
third of the time when the sums go through a stack array as in linalg.panel_block_acc:
zeroing it, moving the 16 zmm into registers and out again, then copying them to the
output (LLVM keeps the stack array in registers only inside the K loop). Here the sums are
SSA values from the start: zeroed registers, K fused multiply-adds, one store each to the
output (products of a 64x64x17 frame 244 -> 181 us of thread time, 328 -> 206 us compiled
for AVX2; the same floats: the same fused multiply-adds in the same order).

The vector width follows the compile target, like everything LLVM vectorises: 16 floats
(zmm) when it has AVX-512F, else 8 (ymm; 4 x 2 vectors of sums and 2 of weights fit the 16
ymm of AVX2 without spilling, where 4 x 8 would not). Numba's cache is keyed by the target,
so a cached kernel is never run on a machine it was not compiled for. Multiply-adds are
llvm.fmuladd, fused where the target has FMA (as Numba's fastmath "contract" does); llvm.fma
would become a libm call per element on a target without it.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

PANEL = 64


def vector_width(context) -> int:
    """Floats per vector for the compile target: 16 with AVX-512F, else 8 (also narrow_ir.py)."""
    features = getattr(context.codegen(), "_tm_features", "") or ""
    return 16 if "+avx512f" in features.split(",") else 8


def _codegen(rows):
    def codegen(context, builder, sig, args):
        out, o, os_, x, xo, xs, w, wo, K = args
        pout = context.make_array(sig.args[0])(context, builder, out).data
        px = context.make_array(sig.args[3])(context, builder, x).data
        pw = context.make_array(sig.args[6])(context, builder, w).data
        vw = vector_width(context)
        per_row = PANEL // vw                 # vectors per 64 columns
        group = 4 if vw == 16 else 2          # vectors of sums per row kept in registers
        f32 = ir.FloatType()
        vec = ir.VectorType(f32, vw)
        vptr = vec.as_pointer()
        i64 = ir.IntType(64)
        zero = ir.Constant(vec, [0.0] * vw)
        splat = ir.Constant(ir.VectorType(ir.IntType(32), vw), [0] * vw)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec, vec, vec]),
                                             f"llvm.fmuladd.v{vw}f32")

        def at(base, i, j):  # pointer to float base[i + j], j a constant, as a vector pointer
            p = builder.gep(base, [builder.add(i, ir.Constant(i64, j))], inbounds=True)
            return builder.bitcast(p, vptr)

        for g0 in range(0, per_row, group):
            accs = [[cgutils.alloca_once(builder, vec) for _ in range(group)] for _ in range(rows)]
            for row in accs:
                for a in row:
                    builder.store(zero, a)
            with cgutils.for_range(builder, K) as loop:
                k = loop.index
                wrow = builder.add(wo, builder.mul(k, ir.Constant(i64, PANEL)))
                wv = [builder.load(at(pw, wrow, (g0 + c) * vw), align=4, typ=vec) for c in range(group)]
                for b in range(rows):
                    xi = builder.add(builder.add(xo, builder.mul(ir.Constant(i64, b), xs)), k)
                    s = builder.load(builder.gep(px, [xi], inbounds=True), typ=f32)
                    undef = ir.Constant(vec, ir.Undefined)
                    one = builder.insert_element(undef, s, ir.Constant(ir.IntType(32), 0))
                    sv = builder.shuffle_vector(one, undef, splat)  # s in every lane
                    for c in range(group):
                        acc = builder.load(accs[b][c], typ=vec)
                        builder.store(builder.call(fma, [sv, wv[c], acc]), accs[b][c])
            for b in range(rows):
                ob = builder.add(o, builder.mul(ir.Constant(i64, b), os_))
                for c in range(group):
                    builder.store(builder.load(accs[b][c], typ=vec), at(pout, ob, (g0 + c) * vw), align=4)
        return context.get_dummy_value()
    return codegen


def _typer(rows):
    def typer(typingctx, out, o, os_, x, xo, xs, w, wo, K):
        return types.void(out, o, os_, x, xo, xs, w, wo, K), _codegen(rows)
    typer.__name__ = f"panel_rows{rows}"
    return typer


# out, o, os, x, xo, xs, w, wo, K: all offsets and strides int64, arrays float32 1-D
panel_rows4 = intrinsic(_typer(4))
panel_rows1 = intrinsic(_typer(1))
