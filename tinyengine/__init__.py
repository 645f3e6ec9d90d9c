"""TinyEngine: a compiler and runtime for deep learning on microcontrollers.

Pipeline (read top-down): frontends -> ir -> passes -> planner -> codegen -> project/runner.
"""
from .version import __version__  # noqa: F401
