"""lstm-infer: low-latency, stateful inference for LSTM/GRU/RNN models (Numba kernels).

    m = lstm_infer.load("model.lstm"); s = m.stream(); y = s.step(x)

`import lstm_infer` does no work: the runtime (numpy, Numba, the kernel cache set-up in
lstm_infer/kernels/__init__.py) is imported on first use of `load`, `Model`, `Stream` or
`StreamPool`.
"""
from .errors import (DeviceUnavailableError, ModelFormatError, NotStreamableError,
                     UnsupportedOnDeviceError)

__version__ = "0.1.0"
__all__ = ["load", "Model", "Stream", "StreamPool", "ModelFormatError", "NotStreamableError",
           "DeviceUnavailableError", "UnsupportedOnDeviceError", "__version__"]

_LAZY = {"load": "model", "Model": "model", "Stream": "stream", "StreamPool": "stream"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
