"""User-facing errors (core layer: imports nothing, so that every layer can raise them).

The CLI prints their message on one line and exits with code 2.
"""


class TinyEngineError(Exception):
    """Base of errors that are the user's input, not a bug: printed without a traceback."""


class ModelError(TinyEngineError, ValueError):
    """The model file cannot be read or is malformed."""


class FitError(TinyEngineError):
    """The compiled model does not fit the board's SRAM or Flash."""


class PatchError(TinyEngineError):
    """A patch schedule that cannot be built for this model."""


class IRError(ValueError):
    """A graph that breaks an IR invariant (bad shape, dangling tensor, cycle...)."""


class UnsupportedError(ValueError):
    """A model feature TinyEngine does not support; the message names node, op and what is."""
