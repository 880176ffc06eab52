"""Exception types that users catch."""


class ModelFormatError(ValueError):
    """The model file is corrupt, truncated, hostile, or from a newer format version."""


class NotStreamableError(RuntimeError):
    """The model cannot run one step at a time (for example it has a reverse-direction layer)."""
