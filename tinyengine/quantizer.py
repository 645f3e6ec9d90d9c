"""Post-training quantization of a float ONNX model, with TFLite's int8 conventions.

TinyEngine compiles int8 models.  A float ONNX file is quantized here from calibration
data (never from nothing): the ONNX frontend asks for

* activation ranges: :func:`calibrate` runs the float model in onnxruntime on the
  calibration inputs and records the min / max of every tensor it needs;
  :func:`activation_quant` turns a range into per-tensor asymmetric int8 parameters
  (the range is widened to hold 0, and 0 is exactly representable);
* weights: :func:`quantize_weights`, per-channel symmetric int8 in [-127, 127] along the
  output-channel axis (zero point 0, as TFLite requires);
* biases: :func:`quantize_bias`, int32 with scale ``input_scale * weight_scale[c]``;
* other constants (operands of Add / Mul, pad values): :func:`quantize_const`,
  per-tensor asymmetric int8 from their own min / max.

Ops that only move data (Reshape, Flatten, MaxPool, AveragePool, Pad, Resize, Transpose)
keep their input's parameters and Sigmoid / Softmax outputs take TFLite's fixed 1/256,
-128; the frontend applies those rules, so the result is an ordinary int8 graph and the rest
of the pipeline is the same as for a TFLite model.

Calibration data: an ``N x <model input>`` float32 array (the model's own layout, NCHW for
exported PyTorch models), a ``.npy`` file holding one, or a folder of images read with
Pillow and preprocessed by :class:`Calibration` (resize, scale to [0, 1], mean / std,
layout).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import TinyEngineError
from .ir import QuantParams

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff", ".webp")


class CalibrationError(TinyEngineError):
    """Missing or unusable calibration data for a float model."""


@dataclass
class Calibration:
    """Where the calibration inputs come from and how images are preprocessed.

    ``source``: an array, a ``.npy`` file or a folder of images.  ``size``: (H, W) images
    are resized to (default: the model's input size).  ``mean`` / ``std``: per-channel (or
    one) values applied to pixels scaled to [0, 1].  ``layout``: the layout of a ``.npy``
    array, "NCHW" (the model's own, default) or "NHWC" (transposed on load).  ``limit``:
    at most this many samples are used.
    """
    source: object = None
    size: Optional[tuple] = None
    mean: Optional[tuple] = None
    std: Optional[tuple] = None
    layout: str = "NCHW"
    limit: int = 1000

    @staticmethod
    def add_arguments(parser) -> None:
        """The command-line options of a float model's calibration (--calibration, --calib-*),
        as one argparse group: the same in every tool (tinyengine, tinytrain)."""
        g = parser.add_argument_group("quantization of a float ONNX model (post-training, int8)")
        g.add_argument("--calibration", metavar="DATA",
                       help="calibration inputs: a .npy array (N x the model's input, float32, the "
                            "model's own layout, NCHW for PyTorch exports) or a folder of images")
        g.add_argument("--calib-size", type=int, nargs=2, metavar=("H", "W"),
                       help="resize calibration images to H x W (default: the model's input size)")
        g.add_argument("--calib-mean", type=float, nargs="+", metavar="M",
                       help="subtract from pixels scaled to [0, 1] (one value or one per channel; "
                            "default 0)")
        g.add_argument("--calib-std", type=float, nargs="+", metavar="S",
                       help="then divide by (one value or one per channel; default 1)")
        g.add_argument("--calib-layout", choices=["NCHW", "NHWC"], default="NCHW",
                       help="layout of a .npy calibration array (default NCHW, the model's own)")
        g.add_argument("--calib-limit", type=int, default=1000, metavar="N",
                       help="use at most N calibration samples (default 1000)")

    @classmethod
    def from_args(cls, args) -> Optional["Calibration"]:
        """The Calibration of the options add_arguments added (None without --calibration)."""
        if not getattr(args, "calibration", None):
            return None
        return cls(args.calibration, size=tuple(args.calib_size) if args.calib_size else None,
                   mean=tuple(args.calib_mean) if args.calib_mean else None,
                   std=tuple(args.calib_std) if args.calib_std else None,
                   layout=args.calib_layout, limit=args.calib_limit)

    def describe(self) -> str:
        if isinstance(self.source, np.ndarray):
            return f"calibration=array{list(self.source.shape)}"
        return f"calibration={Path(str(self.source)).name}"

    def load(self, input_shape: tuple, label: str) -> np.ndarray:
        """The calibration inputs as an N x input_shape float32 array (model layout)."""
        if not isinstance(self.limit, int) or self.limit < 1:
            raise CalibrationError(f"{label}: the calibration limit (--calib-limit) must be a "
                                   f"number of samples >= 1, got {self.limit!r}")
        src = self.source
        if isinstance(src, np.ndarray):
            data = src
        else:
            path = Path(str(src))
            if path.is_dir():
                data = self._images(path, input_shape)
            elif path.is_file():
                try:
                    data = np.load(path, allow_pickle=False)
                except (OSError, ValueError) as e:
                    raise CalibrationError(f"{path}: cannot read calibration data as .npy ({e})") from None
            else:
                raise CalibrationError(f"{path}: calibration data not found (give a .npy file or "
                                       "a folder of images)")
        data = np.asarray(data)
        if data.dtype.kind not in "fiu":
            raise CalibrationError(f"calibration data is {data.dtype}, expected float32 numbers")
        data = data.astype(np.float32)
        if self.layout.upper() not in ("NCHW", "NHWC"):
            raise CalibrationError(f"calibration layout {self.layout!r} (supported: NCHW, NHWC)")
        from_images = not isinstance(src, np.ndarray) and Path(str(src)).is_dir()
        if self.layout.upper() == "NHWC" and not from_images:   # images are converted already
            if data.ndim == 4:
                data = data.transpose(0, 3, 1, 2)
            elif data.ndim == 3:
                data = data.transpose(2, 0, 1)
        want = tuple(input_shape[1:])
        if data.ndim == len(input_shape) and tuple(data.shape[1:]) == want:
            pass
        elif data.ndim == len(input_shape) - 1 and tuple(data.shape) == want:
            data = data[None]
        else:
            raise CalibrationError(f"{label}: calibration data has shape {data.shape}, the model "
                                   f"input is {tuple(input_shape)} (give N x {list(want)})")
        if len(data) == 0:
            raise CalibrationError(f"{label}: the calibration data is empty")
        if not np.all(np.isfinite(data)):
            raise CalibrationError(f"{label}: the calibration data holds NaN or infinite values")
        return np.ascontiguousarray(data[: self.limit])

    def _images(self, folder: Path, input_shape: tuple) -> np.ndarray:
        from PIL import Image

        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise CalibrationError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in the "
                                   "calibration folder")
        if len(input_shape) != 4:
            raise CalibrationError(f"{folder}: image calibration needs a 4-D (NCHW) model input, "
                                   f"the model's is {tuple(input_shape)}")
        _, c, h, w = input_shape
        if c not in (1, 3):
            raise CalibrationError(f"{folder}: image calibration needs 1 or 3 input channels, "
                                   f"the model has {c}")
        h, w = self.size or (h, w)
        mean = np.asarray(self.mean if self.mean is not None else (0.0,), np.float32).reshape(-1)
        std = np.asarray(self.std if self.std is not None else (1.0,), np.float32).reshape(-1)
        out = []
        for p in files[: self.limit]:
            try:
                img = Image.open(p).convert("L" if c == 1 else "RGB").resize((w, h), Image.BILINEAR)
            except OSError as e:
                raise CalibrationError(f"{p}: cannot read the image ({e})") from None
            a = np.asarray(img, dtype=np.float32).reshape(h, w, c) / 255.0
            a = (a - mean) / std
            out.append(a.transpose(2, 0, 1))
        return np.stack(out).astype(np.float32)


# -- activation ranges -----------------------------------------------------------------------
def calibrate(model_proto, names: list, data: np.ndarray, input_name: str) -> dict:
    """Run the float model in onnxruntime on every calibration sample; returns
    ``{tensor name: (min, max)}`` for ``names`` (and the input)."""
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model_proto)
    have = {o.name for o in m.graph.output}
    wanted = [n for n in dict.fromkeys(names) if n != input_name]
    for n in wanted:
        if n not in have:
            m.graph.output.append(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    out_names = [o.name for o in sess.get_outputs()]
    lo = {n: np.inf for n in wanted}
    hi = {n: -np.inf for n in wanted}
    for x in data:
        res = sess.run(out_names, {input_name: x[None]})
        for n, v in zip(out_names, res):
            if n in lo and v.size:
                lo[n] = min(lo[n], float(np.min(v)))
                hi[n] = max(hi[n], float(np.max(v)))
    ranges = {n: (lo[n], hi[n]) for n in wanted}
    ranges[input_name] = (float(data.min()), float(data.max()))
    return ranges


def activation_quant(lo: float, hi: float) -> QuantParams:
    """Per-tensor asymmetric int8 parameters for a real range (TFLite's convention: the range
    holds 0 and 0 is an integer code)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if not hi > lo:
        return QuantParams(np.float32(1.0 / 256), -128)
    scale = float(np.float32((hi - lo) / 255.0))
    zp = int(np.clip(np.round(-128 - lo / scale), -128, 127))
    return QuantParams(scale, zp)


FIXED_SIGMOID_SOFTMAX = (1.0 / 256, -128)     # TFLite's int8 output of LOGISTIC / SOFTMAX


# -- constants ---------------------------------------------------------------------------------
def quantize_weights(w: np.ndarray, axis: int = 0) -> tuple:
    """Per-channel symmetric int8 (codes in [-127, 127], zero point 0) along ``axis``."""
    w = np.asarray(w, dtype=np.float64)
    moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    maxabs = np.abs(moved).max(axis=1) if moved.size else np.zeros(w.shape[axis])
    scale = np.where(maxabs > 0, maxabs / 127.0, 1.0).astype(np.float32).astype(np.float64)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
    return q, QuantParams(scale, np.zeros(scale.size, np.int64), axis)


def quantize_bias(b: np.ndarray, in_scale: float, w_scales) -> tuple:
    """int32 bias with scale ``in_scale * w_scale[c]`` (zero point 0)."""
    ws = np.atleast_1d(np.asarray(w_scales, dtype=np.float32)).astype(np.float64)
    s = float(np.float32(in_scale)) * ws
    s = np.broadcast_to(s, np.shape(b)) if s.size == 1 else s
    q = np.clip(np.round(np.asarray(b, dtype=np.float64) / s), -(2 ** 31), 2 ** 31 - 1).astype(np.int32)
    return q, QuantParams(s.reshape(-1) if s.size > 1 else s.reshape(-1)[:1],
                          np.zeros(max(1, np.size(s)), np.int64), 0 if np.size(s) > 1 else None)


def quantize_const(x: np.ndarray) -> tuple:
    """Per-tensor asymmetric int8 for a constant operand (Add / Mul) from its own range."""
    x = np.asarray(x, dtype=np.float64)
    q = activation_quant(float(x.min()) if x.size else 0.0, float(x.max()) if x.size else 0.0)
    codes = np.clip(np.round(x / q.s) + q.zp, -128, 127).astype(np.int8)
    return codes, q


def quantize_values(x: np.ndarray, q: QuantParams) -> np.ndarray:
    """Float values -> int8 codes in given per-tensor parameters."""
    return np.clip(np.round(np.asarray(x, dtype=np.float64) / q.s) + q.zp, -128, 127).astype(np.int8)
