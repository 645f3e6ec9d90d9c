"""TinyEngine: a compiler and runtime for deep learning on microcontrollers.

Pipeline (read top-down): frontends -> ir -> passes -> planner -> codegen -> project/runner.
"""
__version__ = "0.1.0"
