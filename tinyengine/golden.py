"""The golden reference: TensorFlow Lite Micro (the `tflite-micro` package).

Everything TinyEngine produces is compared against this, never against itself.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

DEFAULT_ARENA = 8 * 1024 * 1024


def _interpreter(model, arena_size: int):
    from tflite_micro import runtime

    if isinstance(model, (str, Path)):
        return runtime.Interpreter.from_file(str(model), arena_size=arena_size)
    return runtime.Interpreter.from_bytes(bytes(model), arena_size=arena_size)


def run_tflm(model, inputs: list, arena_size: int = DEFAULT_ARENA) -> list:
    """Run one inference of a .tflite model (path or bytes) on TFLite Micro."""
    return run_tflm_many(model, [inputs], arena_size)[0]


def run_tflm_many(model, records: list, arena_size: int = DEFAULT_ARENA) -> list:
    """Run several inferences (each a list of input arrays) on one interpreter."""
    interp = _interpreter(model, arena_size)
    n_out = _num_outputs(model)
    results = []
    for inputs in records:
        for i, x in enumerate(inputs):
            interp.set_input(np.ascontiguousarray(x), i)
        interp.invoke()
        results.append([np.array(interp.get_output(i)) for i in range(n_out)])
    return results


def _num_outputs(model) -> int:
    import tflite

    data = Path(model).read_bytes() if isinstance(model, (str, Path)) else bytes(model)
    return tflite.Model.GetRootAsModel(data, 0).Subgraphs(0).OutputsLength()
