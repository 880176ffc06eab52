"""Finding numba.cuda and a usable GPU, and which ops have device kernels.

numba.cuda is imported here, on first use of device="cuda", never at `import lstm_infer`.
NUMBA_ENABLE_CUDASIM=1 (set before numba is imported) runs everything on numba's CUDA
simulator, which needs no GPU: the test suite uses it (tests/test_cuda_sim.py).
"""
from __future__ import annotations

from ..errors import DeviceUnavailableError, UnsupportedOnDeviceError

DEVICES = ("cpu", "cuda")

# Ops with a device kernel (lstm_infer/cuda/kernels.py, step_ops.py). Every other op of the
# CPU path is refused by check_supported, naming it, when a device pool or run is made.
SUPPORTED_OPS = ("Linear", "LSTM", "GRU", "RNN", "Concat", "Activation", "Add", "Mul", "Binary",
                 "Scale", "LayerNorm", "Embedding", "Gather", "Reduce", "Conv1d", "TimeReduce",
                 "History")

_INSTALL = ("install the CUDA extra (pip install 'lstm-infer[cuda]': numba-cuda and the CUDA "
            "toolkit wheels) on a machine with an NVIDIA GPU and its driver; to try the path "
            "without a GPU, set NUMBA_ENABLE_CUDASIM=1 before numba is imported (numba's CUDA "
            "simulator, slow, for tests)")


def check_device(device: str) -> bool:
    """True for "cuda", False for "cpu"; anything else is a ValueError."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(map(repr, DEVICES))}, got {device!r}")
    return device == "cuda"


def get_cuda():
    """numba.cuda, with a usable GPU (or the simulator), else DeviceUnavailableError."""
    try:
        from numba import cuda
    except Exception as e:  # numba without its CUDA target, or numba-cuda failing to import
        raise DeviceUnavailableError(f"device='cuda' needs numba's CUDA target, which failed to "
                                     f"import ({type(e).__name__}: {e}); {_INSTALL}") from e
    if cuda.is_available():
        return cuda
    raise DeviceUnavailableError(f"device='cuda' needs an NVIDIA GPU, and numba.cuda found none "
                                 f"usable: {_reason(cuda)}; {_INSTALL}")


def _reason(cuda) -> str:
    """Why numba.cuda sees no GPU: the driver's own error when it gives one."""
    try:
        n = len(cuda.gpus)
    except Exception as e:
        text = " ".join(str(e).split()).rstrip(" :")
        return text or type(e).__name__
    return "no CUDA device found" if n == 0 else f"{n} device(s) found but none usable"


def check_supported(graph) -> None:
    """UnsupportedOnDeviceError naming every node whose op has no device kernel, or a model
    with an image prelude. Reverse layers and lengths= run (run_on_device's seq_kernel); a
    device pool of a model with a reverse layer is refused as the CPU pool is
    (NotStreamableError)."""
    missing = sorted({n.op for n in graph.nodes if n.op not in SUPPORTED_OPS})
    if missing:
        raise UnsupportedOnDeviceError(
            f"device='cuda' has no kernel yet for {', '.join(missing)} (device ops: "
            f"{', '.join(SUPPORTED_OPS)}); run this model with device='cpu'")
    if graph.prelude is not None:
        raise UnsupportedOnDeviceError("device='cuda' does not run a model with an image prelude "
                                       "yet; run it with device='cpu'")
