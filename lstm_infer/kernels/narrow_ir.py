"""A narrow mat-vec written as LLVM IR: up to 64 output columns, sums kept in registers.

    out[j] += sum_k x[k] * w[wo + k*stride + j],  j < n <= NARROW_MAX

A Linear head of 16 outputs (64 -> 16) took 160 ns through linalg.matvec_cols, 1024
multiply-adds that need ~20 ns: LLVM vectorises matvec_cols's column loop for long rows
(a 16-wide vector loop interleaved, so 16 columns run its scalar remainder or a single
vector with runtime alias checks), and out is loaded and stored every four rows. Numba
gives no way to keep a runtime number of vectors in registers (a stack array of 16 sums
was unrolled and left scalar, measured 170 ns), so the sums here are SSA vectors from the
start: one load of out, the rows, one store. The last vector is masked, so nothing is read
or written past column n (a matrix at the end of the arena stays in bounds).

The same floats as matvec_cols: per column the same products and additions in the same
order (four rows as ((x0*r0 + x1*r1) + x2*r2) + x3*r3 added to the sum, then the rest one
by one) with the same `contract` flags that KERNEL's fastmath gives Numba's code, so the
backend fuses the same multiply-adds (tests/test_narrow_matvec.py compares bits). The
vector width follows the compile target as in gemm_block.py: 16 floats with AVX-512F,
else 8.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .gemm_block import vector_width

# Most columns one call keeps in registers: 4 zmm with AVX-512, 8 ymm with AVX2 (plus
# 4 row vectors and a splat: within AVX2's 16 registers).
NARROW_MAX = 64

_FLAGS = ("contract",)


def _codegen(context, builder, sig, args):
    out, x, w, wo, rows, stride, n = args
    pout = context.make_array(sig.args[0])(context, builder, out).data
    px = context.make_array(sig.args[1])(context, builder, x).data
    pw = context.make_array(sig.args[2])(context, builder, w).data
    vw = vector_width(context)
    most = NARROW_MAX // vw
    f32 = ir.FloatType()
    i32 = ir.IntType(32)
    i64 = ir.IntType(64)
    vec = ir.VectorType(f32, vw)
    mvec = ir.VectorType(ir.IntType(1), vw)
    module = builder.module
    mload = cgutils.get_or_insert_function(
        module, ir.FunctionType(vec, [vec.as_pointer(), i32, mvec, vec]), f"llvm.masked.load.v{vw}f32.p0")
    mstore = cgutils.get_or_insert_function(
        module, ir.FunctionType(ir.VoidType(), [vec, vec.as_pointer(), i32, mvec]),
        f"llvm.masked.store.v{vw}f32.p0")
    align = ir.Constant(i32, 4)
    zero = ir.Constant(vec, [0.0] * vw)
    splat0 = ir.Constant(ir.VectorType(i32, vw), [0] * vw)
    lanes = ir.Constant(ir.VectorType(i64, vw), list(range(vw)))
    c = lambda v: ir.Constant(i64, v)  # noqa: E731

    # vectors in use (1..most) and the lanes of the last one
    nv = builder.udiv(builder.add(n, c(vw - 1)), c(vw))
    last = builder.sub(n, builder.mul(builder.sub(nv, c(1)), c(vw)))
    undef_i = ir.Constant(ir.VectorType(i64, vw), ir.Undefined)
    last_v = builder.shuffle_vector(builder.insert_element(undef_i, last, ir.Constant(i32, 0)),
                                    undef_i, splat0)
    mask = builder.icmp_unsigned("<", lanes, last_v)

    def vptr(base, i):
        return builder.bitcast(builder.gep(base, [i], inbounds=True), vec.as_pointer())

    def load(base, i, masked):
        if masked:
            return builder.call(mload, [vptr(base, i), align, mask, zero])
        return builder.load(vptr(base, i), align=4, typ=vec)

    def splat(base, i):
        s = builder.load(builder.gep(base, [i], inbounds=True), typ=f32)
        undef = ir.Constant(vec, ir.Undefined)
        return builder.shuffle_vector(builder.insert_element(undef, s, ir.Constant(i32, 0)), undef, splat0)

    def fmul(a, b):
        return builder.fmul(a, b, flags=_FLAGS)

    def fadd(a, b):
        return builder.fadd(a, b, flags=_FLAGS)

    end = builder.append_basic_block("narrow.end")
    switch = builder.switch(nv, end)
    for k in range(1, most + 1):
        block = builder.append_basic_block(f"narrow.v{k}")
        switch.add_case(c(k), block)
        builder.position_at_end(block)
        accs = [cgutils.alloca_once(builder, vec) for _ in range(k)]
        for v in range(k):
            builder.store(load(pout, c(v * vw), v == k - 1), accs[v])
        with cgutils.for_range(builder, builder.udiv(rows, c(4))) as loop:
            k0 = builder.mul(loop.index, c(4))
            xs = [splat(px, builder.add(k0, c(i))) for i in range(4)]
            bases = [builder.add(wo, builder.mul(builder.add(k0, c(i)), stride)) for i in range(4)]
            for v in range(k):
                r = [load(pw, builder.add(b, c(v * vw)), v == k - 1) for b in bases]
                s = fadd(fmul(xs[0], r[0]), fmul(xs[1], r[1]))
                s = fadd(s, fmul(xs[2], r[2]))
                s = fadd(s, fmul(xs[3], r[3]))
                builder.store(fadd(builder.load(accs[v], typ=vec), s), accs[v])
        with cgutils.for_range_slice(builder, builder.mul(builder.udiv(rows, c(4)), c(4)), rows, c(1)) as (kk, _):
            xk = splat(px, kk)
            base = builder.add(wo, builder.mul(kk, stride))
            for v in range(k):
                r = load(pw, builder.add(base, c(v * vw)), v == k - 1)
                builder.store(fadd(builder.load(accs[v], typ=vec), fmul(xk, r)), accs[v])
        for v in range(k):
            a = builder.load(accs[v], typ=vec)
            if v == k - 1:
                builder.call(mstore, [a, vptr(pout, c(v * vw)), align, mask])
            else:
                builder.store(a, vptr(pout, c(v * vw)), align=4)
        builder.branch(end)
    builder.position_at_end(end)
    return context.get_dummy_value()


@intrinsic
def narrow_rows(typingctx, out, x, w, wo, rows, stride, n):
    """out[j] += sum_k x[k] * w[wo + k*stride + j], j < n, 1 <= n <= NARROW_MAX, rows >= 0;
    out, x, w float32 vectors with unit stride (the caller checks), all else int64. Does
    nothing for n outside that range."""
    return types.void(out, x, w, wo, rows, stride, n), _codegen
