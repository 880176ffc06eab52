"""lstm-infer: low-latency, stateful inference for LSTM/GRU/RNN models (Numba kernels).

    m = lstm_infer.load("model.lstm"); s = m.stream(); y = s.step(x)
"""
from ._cache import configure_cache as _configure_cache
from ._cache import harden_numba_cache as _harden_numba_cache

_configure_cache()  # before Numba reads its configuration
_harden_numba_cache()

from .errors import ModelFormatError, NotStreamableError  # noqa: E402
from .model import Model, load  # noqa: E402
from .stream import Stream, StreamPool  # noqa: E402

__version__ = "0.1.0"
__all__ = ["load", "Model", "Stream", "StreamPool", "ModelFormatError", "NotStreamableError",
           "__version__"]
