"""Load TinyEngine's portable C kernels into Python with ctypes, for kernel unit tests.

All firmware/kernels/*.c are compiled with the project's warning flags (and -ffp-contract=off,
which the float32 training kernels need to give the same bits everywhere) into one shared
library (cached per test session), so each kernel can be called directly on NumPy arrays
and compared with its op's NumPy reference.
"""
from __future__ import annotations

import ctypes
import functools
import subprocess
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "firmware" / "kernels"
CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off", "-fPIC", "-shared"]


@functools.lru_cache(maxsize=None)
def load_kernels() -> ctypes.CDLL:
    out = Path(tempfile.mkdtemp(prefix="te_kernels_")) / "libtekernels.so"
    sources = sorted(str(p) for p in KERNELS.glob("*.c"))
    subprocess.run(["gcc", *CFLAGS, "-I", str(KERNELS), "-o", str(out), *sources, "-lm"],
                   check=True, capture_output=True, text=True)
    return ctypes.CDLL(str(out))


def ptr(a: np.ndarray) -> ctypes.c_void_p:
    """Pointer to a C-contiguous array's data (keep the array alive during the call)."""
    assert a.flags["C_CONTIGUOUS"], "arrays passed to C must be C-contiguous"
    return ctypes.c_void_p(a.ctypes.data)
