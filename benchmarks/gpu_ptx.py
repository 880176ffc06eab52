"""Compile the device kernels (lstm_infer/cuda/kernels.py) to PTX without a GPU.

numba's CUDA simulator (the test suite's check) runs the kernels as Python, so it accepts
code that the real CUDA target would refuse to type or lower. This compiles step_kernel,
run_kernel and seq_kernel, with every device op they dispatch to, through numba-cuda and
NVVM for a chosen compute capability: a check that they build for a real GPU (not that they
run correctly there: that needs a GPU, `python -m benchmarks.gpu`).

Needs numba-cuda and the CUDA compiler libraries (NVVM, NVRTC), no driver:
    python -m benchmarks.gpu_ptx [--cc 8.0]
numba looks up the device's compute capability when it compiles a device function; with
no driver, that lookup is replaced by --cc here.
"""
from __future__ import annotations

import argparse
import time
import types

A1f, A1b, A1i32, A1i = "float32[::1]", "int8[::1]", "int32[::1]", "int64[::1]"
A2i, A2f, A3f = "int64[:, ::1]", "float32[:, ::1]", "float32[:, :, ::1]"
SIGNATURES = {  # the argument types pool.py launches them with
    "step_kernel": f"void({A2i}, {A1f}, {A1b}, {A1i32}, {A1i}, {A2f}, {A2f}, {A2f}, {A2f})",
    "run_kernel": f"void({A2i}, {A1f}, {A1b}, {A1i32}, {A1i}, {A2i}, {A2f}, {A2f}, {A3f}, {A3f})",
    "seq_kernel": (f"void({A2i}, {A2i}, {A1i}, {A1i}, {A1f}, {A1b}, {A1i32}, {A1i}, {A2i}, {A2f}, "
                   f"{A3f}, {A3f}, {A3f})"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cc", default="8.0", help="compute capability, e.g. 8.0 or 9.0")
    cc = tuple(int(v) for v in ap.parse_args().cc.split("."))
    from numba import cuda
    from numba.cuda import compiler, dispatcher
    fake = types.SimpleNamespace(compute_capability=cc)
    dispatcher.get_current_device = compiler.get_current_device = lambda: fake
    from lstm_infer.cuda import kernels
    for name, sig in SIGNATURES.items():
        t = time.perf_counter()
        ptx, _ = cuda.compile_ptx(getattr(kernels, name).py_func, sig, cc=cc)
        print(f"{name}: {len(ptx):,} characters of PTX for sm_{cc[0]}{cc[1]} in "
              f"{time.perf_counter() - t:.1f} s", flush=True)


if __name__ == "__main__":
    main()
