"""User-facing errors.  The CLI prints their message on one line and exits non-zero."""
from .ir import IRError  # noqa: F401  (a broken graph is a user-facing error too)
from .ops import UnsupportedError  # noqa: F401


class TinyEngineError(Exception):
    """Base of errors that are the user's input, not a bug: printed without a traceback."""


class ModelError(TinyEngineError, ValueError):
    """The model file cannot be read or is malformed."""


class FitError(TinyEngineError):
    """The compiled model does not fit the board's SRAM or Flash."""
