"""kernels/narrow_ir.narrow_rows (through linalg.matvec_f32, what mv and the packed kernels'
remainders call): bit for bit matvec_cols's floats for up to NARROW_MAX columns, nothing
read or written past column n (a guard page after the matrix), and the same at AVX2's
vector width (a subprocess compiled for Haswell)."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from lstm_infer.kernels.linalg import matvec_cols, matvec_f32
from lstm_infer.kernels.narrow_ir import NARROW_MAX


def _case(rng):
    """A random mat-vec: rows 0..69 (fours and a remainder), 1..NARROW_MAX columns starting
    at c0 of a wider matrix at w_off of the arena, magnitudes from 1e-3 to 1e2 so that
    every rounding (and which products are fused) shows in the bits."""
    rows = int(rng.integers(0, 70))
    n = int(rng.integers(1, NARROW_MAX + 1))
    stride = n + int(rng.integers(0, 20))
    c0 = int(rng.integers(0, stride - n + 1))
    w_off = int(rng.integers(0, 5))
    scale = 10.0 ** int(rng.integers(-3, 3))
    w = (rng.standard_normal(w_off + rows * stride + 3) * scale).astype(np.float32)
    x = rng.standard_normal(rows).astype(np.float32)
    out = rng.standard_normal(n + 3).astype(np.float32)
    return out, x, w, w_off, rows, stride, c0, n


def _same_bits(seed: int, cases: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(cases):
        out, x, w, w_off, rows, stride, c0, n = _case(rng)
        want, got = out.copy(), out.copy()
        matvec_cols(want[:n], x, w, w_off, rows, stride, c0, n)
        matvec_f32(got[:n], x, w, w_off, rows, stride, c0, n)
        assert np.array_equal(got, want), (rows, n, stride, c0)  # incl. out[n:] untouched


def test_same_bits_as_matvec_cols():
    _same_bits(11, 1500)


def test_columns_past_n_stay_out_of_the_sums():
    """NaN right after each row's n columns (and at the end of the arena) reaches no sum."""
    rng = np.random.default_rng(3)
    for rows, n in [(64, 16), (64, 10), (7, 1), (9, 33), (4, 64)]:
        stride = n + 1
        W = rng.standard_normal((rows, stride)).astype(np.float32)
        W[:, n] = np.nan
        w = np.append(W.ravel()[:(rows - 1) * stride + n], np.float32(np.nan))
        x = rng.standard_normal(rows).astype(np.float32)
        out = np.zeros(n, np.float32)
        matvec_f32(out, x, w, 0, rows, stride, 0, n)
        np.testing.assert_allclose(out, x.astype(np.float64) @ W[:, :n], rtol=1e-5, atol=1e-5)


def test_no_read_past_the_end_of_the_arena(tmp_path):
    """A matrix whose last row ends on a page that is followed by an unreadable one: an
    unmasked vector load of the last row's partial vector would fault (in a subprocess, so a
    fault fails this test instead of killing the run)."""
    code = textwrap.dedent("""
        import ctypes, mmap
        import numpy as np
        from lstm_infer.kernels.linalg import matvec_f32
        page = mmap.PAGESIZE
        buf = mmap.mmap(-1, 2 * page)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.mprotect(ctypes.c_void_p(addr + page), page, 0) == 0  # PROT_NONE
        arena = np.frombuffer(buf, np.float32, count=page // 4)
        rng = np.random.default_rng(0)
        for rows, n in [(5, 3), (8, 17), (3, 1), (2, 63)]:
            w = arena[page // 4 - rows * n:]      # the matrix's last float is the page's last
            w[:] = rng.standard_normal(w.size).astype(np.float32)
            x = rng.standard_normal(rows).astype(np.float32)
            out = np.zeros(n, np.float32)
            matvec_f32(out, x, w, 0, rows, n, 0, n)
            ref = x.astype(np.float64) @ w.reshape(rows, n)
            assert np.abs(out - ref).max() < 1e-4
        print("ok")
    """)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "ok", (done.returncode, done.stderr[-3000:])


def test_wider_or_strided_goes_to_matvec_cols():
    """Over NARROW_MAX columns, or a strided out or x, matvec_f32 is matvec_cols itself."""
    rng = np.random.default_rng(4)
    W = rng.standard_normal((20, 80)).astype(np.float32)
    x = rng.standard_normal(40).astype(np.float32)
    for out_view, xv, n in [(np.zeros(80, np.float32), x[:20], 80),
                            (np.zeros(32, np.float32)[::2], x[:20], 16),
                            (np.zeros(16, np.float32), x[::2], 16)]:
        want = out_view.copy()
        matvec_cols(want, xv, W.ravel(), 0, 20, 80, 0, n)
        matvec_f32(out_view, xv, W.ravel(), 0, 20, 80, 0, n)
        assert np.array_equal(out_view, want)


@pytest.mark.skipif(sys.platform != "linux" or os.uname().machine != "x86_64",
                    reason="the AVX2 target is an x86-64 one")
def test_same_bits_compiled_for_avx2(tmp_path):
    """The 8-wide (ymm) form, compiled for Haswell in a process of its own with its own cache."""
    from llvmlite import binding as ll
    if not ll.get_host_cpu_features().get("avx2", False):
        pytest.skip("this CPU has no AVX2")
    from benchmarks.run import ISA_ENV  # the target `benchmarks.run --isa avx2` measures
    numba_target = {k: v for k, v in ISA_ENV["avx2"].items() if k.startswith("NUMBA_")}
    env = {**os.environ, **numba_target, "NUMBA_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__)] + sys.path)}
    code = textwrap.dedent("""
        from test_narrow_matvec import _same_bits
        from lstm_infer.kernels.gemm_block import vector_width
        from numba.core.registry import cpu_target
        assert vector_width(cpu_target.target_context) == 8
        _same_bits(12, 600)
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
