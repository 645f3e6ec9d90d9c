"""QUANTIZE (float32 -> int8/int16, or requantization int8/int16 -> int8/int16) and
DEQUANTIZE (int8/int16 -> float32), as TensorFlow Lite Micro's reference kernels do them.

* float -> int: ``round_half_away(x / (float)scale) + zero_point``, clamped; the division is
  float32 (AffineQuantize casts the double scale back to float).
* int -> int: Requantize, ``MultiplyByQuantizedMultiplier(x - in_zp, QuantizeMultiplier(
  in_scale / out_scale)) + out_zp``, clamped.
* int -> float: ``(float)((double)scale * (x - zp))``.  The product of a float32 scale and
  an integer below 2^24 is exact in double, so rounding it once to float equals the float32
  product ``scale * (float)(x - zp)``, which is what the C kernel computes.
"""
from __future__ import annotations

import numpy as np

from tinyengine.ops import OpDef, register, unsupported
from tinyengine.ops.common import unary_io
from tinyengine.quant import multiply_by_quantized_multiplier, quantize_multiplier, tflite_scale

_INT_RANGE = {"int8": (-128, 127), "int16": (-32768, 32767)}
_SUFFIX = {"int8": "s8", "int16": "s16"}


def affine_quantize(x, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """reference_ops::AffineQuantize: float32 division, std::round, clamp."""
    x = np.asarray(x, dtype=np.float32)
    q = x / np.float32(scale)                                  # float32 / float32
    r = _round_half_away(q)
    lo, hi = _INT_RANGE[dtype]
    r = np.clip(r, -2.0**31, 2.0**31 - 1)
    return np.clip(r.astype(np.int64) + zero_point, lo, hi).astype(dtype)


def _round_half_away(q: np.ndarray) -> np.ndarray:
    """roundf without double rounding: truncate, then compare the (exact) fraction."""
    q = q.astype(np.float32)
    t = np.trunc(q)
    frac = q - t                                                # exact in float32
    return (t + np.where(frac >= 0.5, 1, 0) - np.where(frac <= -0.5, 1, 0)).astype(np.float64)


@register
class Quantize(OpDef):
    name = "QUANTIZE"
    template = "ops/quantize.c.j2"
    kernels = ("te_quantize_f32_s8.c", "te_quantize_f32_s16.c", "te_requantize_s8.c",
               "te_requantize_s8_s16.c", "te_requantize_s16_s8.c", "te_requantize_s16.c")
    inplace = True   # int -> int of the same width only: see inplace_ok()

    def check(self, node, graph):
        x, y = unary_io(node, graph)
        ok = x.dtype in ("float32", "int8", "int16") and y.dtype in ("int8", "int16")
        if not ok:
            raise unsupported(node, f"{x.dtype} -> {y.dtype} (supported: float32/int8/int16 -> "
                              "int8/int16)")
        if y.quant is None or y.quant.per_channel:
            raise unsupported(node, "output must be per-tensor quantized (per-channel QUANTIZE "
                              "is not supported)")
        if x.dtype != "float32" and (x.quant is None or x.quant.per_channel):
            raise unsupported(node, "integer input must be per-tensor quantized")
        if x.size != y.size:
            raise unsupported(node, f"input shape {x.shape} and output shape {y.shape} differ")
        if not y.quant.s > 0:
            raise unsupported(node, f"output scale {y.quant.s} must be positive")

    def inplace_ok(self, node, graph):
        x, y = unary_io(node, graph)
        return x.dtype != "float32" and x.itemsize == y.itemsize

    def prepare(self, node, graph):
        x, y = unary_io(node, graph)
        p = {"size": y.size, "out_zp": y.quant.zp,
             "kernel": (f"te_quantize_f32_{_SUFFIX[y.dtype]}" if x.dtype == "float32" else
                        "te_requantize_" + (_SUFFIX[x.dtype] if x.dtype == y.dtype else
                                            f"{_SUFFIX[x.dtype]}_{_SUFFIX[y.dtype]}"))}
        if x.dtype == "float32":
            p["scale"] = float(np.float32(y.quant.s))
            p["scale_c"] = float.hex(p["scale"]) + "f"      # exact float32 literal
        else:
            # quantize_common.cc PrepareQuantizeReference (int8/int16 -> int8/int16):
            # QuantizeMultiplier((double)input_scale / (double)output_scale)
            mult, shift = quantize_multiplier(tflite_scale(x.quant.s) / tflite_scale(y.quant.s))
            p.update(in_zp=x.quant.zp, mult=mult, shift=shift)
        return p

    def reference(self, node, graph, inputs):
        x_t, y = unary_io(node, graph)
        p = node.params
        if x_t.dtype == "float32":
            out = affine_quantize(inputs[0], p["scale"], p["out_zp"], y.dtype)
        else:
            v = np.asarray(inputs[0]).astype(np.int64) - p["in_zp"]
            out = multiply_by_quantized_multiplier(v, p["mult"], p["shift"]) + p["out_zp"]
            lo, hi = _INT_RANGE[y.dtype]
            out = np.clip(out, lo, hi).astype(y.np_dtype)
        return [out.reshape(y.shape)]


@register
class Dequantize(OpDef):
    name = "DEQUANTIZE"
    template = "ops/dequantize.c.j2"
    kernels = ("te_dequantize_s8.c", "te_dequantize_s16.c")

    def check(self, node, graph):
        x, y = unary_io(node, graph)
        if x.dtype not in ("int8", "int16") or y.dtype != "float32":
            raise unsupported(node, f"{x.dtype} -> {y.dtype} (supported: int8/int16 -> float32)")
        if x.quant is None or x.quant.per_channel:
            raise unsupported(node, "input must be per-tensor quantized (per-channel DEQUANTIZE "
                              "is not supported)")
        if x.size != y.size:
            raise unsupported(node, f"input shape {x.shape} and output shape {y.shape} differ")

    def prepare(self, node, graph):
        x, y = unary_io(node, graph)
        scale = float(np.float32(x.quant.s))
        return {"size": y.size, "zp": x.quant.zp, "scale": scale,
                "scale_c": float.hex(scale) + "f",          # exact float32 literal
                "kernel": f"te_dequantize_{_SUFFIX[x.dtype]}"}

    def reference(self, node, graph, inputs):
        _, y = unary_io(node, graph)
        p = node.params
        v = np.asarray(inputs[0]).astype(np.int64) - p["zp"]
        out = (np.float64(p["scale"]) * v.astype(np.float64)).astype(np.float32)
        return [out.reshape(y.shape)]
