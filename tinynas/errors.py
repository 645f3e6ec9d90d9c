"""Errors of tinynas: each carries one line that names the option, file or value and what is supported."""
from __future__ import annotations


class TinyNasError(ValueError):
    """Bad input to tinynas (a data folder, an option, a candidate); str() is the one-line message."""


class CandidateError(TinyNasError):
    """A candidate that does not belong to its search space."""
