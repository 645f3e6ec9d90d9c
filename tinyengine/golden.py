"""The golden reference: TensorFlow Lite Micro (the `tflite-micro` package).

Everything TinyEngine produces is compared against this, never against itself.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import TinyEngineError

DEFAULT_ARENA = 8 * 1024 * 1024


class GoldenError(TinyEngineError):
    """The golden reference itself cannot load or run the model (a damaged file TinyEngine
    accepted, or a feature the reference lacks): there is nothing to compare against."""


def _label(model) -> str:
    return str(model) if isinstance(model, (str, Path)) else "<model bytes>"


def _reference_failed(model, what: str, e: Exception) -> GoldenError:
    detail = " ".join(str(e).split())[:200]
    return GoldenError(f"{_label(model)}: the reference, TensorFlow Lite Micro, could not {what} "
                          f"this model ({type(e).__name__}{': ' + detail if detail else ''}), so "
                          "there is nothing to verify against")


def _interpreter(model, arena_size: int):
    from tflite_micro import runtime

    try:
        if isinstance(model, (str, Path)):
            return runtime.Interpreter.from_file(str(model), arena_size=arena_size)
        return runtime.Interpreter.from_bytes(bytes(model), arena_size=arena_size)
    except Exception as e:  # its loader fails anywhere inside its own flatbuffer accessors
        raise _reference_failed(model, "load", e) from None


def run_tflm(model, inputs: list, arena_size: int = DEFAULT_ARENA) -> list:
    """Run one inference of a .tflite model (path or bytes) on TFLite Micro."""
    return run_tflm_many(model, [inputs], arena_size)[0]


def run_tflm_many(model, records: list, arena_size: int = DEFAULT_ARENA) -> list:
    """Run several inferences (each a list of input arrays) on one interpreter."""
    interp = _interpreter(model, arena_size)
    n_out = _num_outputs(model)
    results = []
    for inputs in records:
        try:
            for i, x in enumerate(inputs):
                interp.set_input(np.ascontiguousarray(x), i)
            interp.invoke()
            results.append([np.array(interp.get_output(i)) for i in range(n_out)])
        except Exception as e:
            raise _reference_failed(model, "run", e) from None
    return results


def _num_outputs(model) -> int:
    import tflite

    data = Path(model).read_bytes() if isinstance(model, (str, Path)) else bytes(model)
    return tflite.Model.GetRootAsModel(data, 0).Subgraphs(0).OutputsLength()


def run_onnxruntime_many(model, records: list) -> list:
    """Run an ONNX model (path) in onnxruntime on model-level records (each a list of input
    arrays in the model's own layout and dtype); the golden of `verify` for ONNX files.
    onnxruntime computes QDQ models with its own integer kernels, so agreement is reported
    as top-1 agreement and exactly equal outputs, not bit-exactness."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    out = []
    for rec in records:
        feed = {n: np.ascontiguousarray(x).reshape([d if isinstance(d, int) else 1 for d in i.shape])
                for n, x, i in zip(names, rec, sess.get_inputs())}
        out.append([np.asarray(y) for y in sess.run(None, feed)])
    return out
