"""Exception types that users catch."""


class ModelFormatError(ValueError):
    """The model file is corrupt, truncated, hostile, or from a newer format version."""


class NotStreamableError(RuntimeError):
    """The model cannot run one step at a time (for example it has a reverse-direction layer)."""


class SpecError(Exception):
    """Internal: something in a graph document is invalid (an attribute, a weight, a name).
    Raised by the op specs; parse_graph adds where and re-raises it as ModelFormatError,
    so users never see this type."""


class DeviceUnavailableError(RuntimeError):
    """device="cuda" was asked for but no usable GPU (or numba's CUDA target) is present;
    the message names what is missing."""


class UnsupportedOnDeviceError(NotImplementedError):
    """The model uses an op that has no device kernel yet (lstm_infer/cuda/); the message
    lists those ops and the supported ones. The CPU path runs the model."""
