"""Exception types that users catch."""


class ModelFormatError(ValueError):
    """The model file is corrupt, truncated, hostile, or from a newer format version."""


class NotStreamableError(RuntimeError):
    """The model cannot run one step at a time (for example it has a reverse-direction layer)."""


class SpecError(Exception):
    """Internal: something in a graph document is invalid (an attribute, a weight, a name).
    Raised by the op specs; parse_graph adds where and re-raises it as ModelFormatError,
    so users never see this type."""
