"""TFLite's fixed-point arithmetic in NumPy, bit for bit.

These are the integer helpers of TensorFlow Lite (``quantization_util.cc`` and
``common.h``) with the double rounding TensorFlow Lite Micro uses by default.  All
functions accept scalars or arrays and work in int64 internally, wrapping to
int32 where the C code would.

The reference is the pinned ``tflite-micro`` package (0.dev20261023182759, built from
tflite-micro commit 8f6596d); where its source is not at hand, the float/double arithmetic
of its ``_runtime.so`` was read from the machine code, and the tests in
``tests/test_multipliers.py`` compare every op's multiplier with what that build computes.
Every op's real multiplier is formed from the scales as TFLite holds them: a C ``float``
(:func:`tflite_scale`), widened to ``double`` before any product or quotient.
"""
from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def tflite_round(x):
    """std::round: halves away from zero."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def tflite_scale(scale) -> float:
    """A quantization scale as TFLite computes with it: ``TfLiteQuantizationParams.scale`` is a
    C float, and the kernels' ``static_cast<double>(params.scale)`` widens that float."""
    return float(np.float32(scale))


def quantize_multiplier(real: float) -> tuple:
    """QuantizeMultiplier (quantization_util.cc, double-rounding build, no TFLITE_EMULATE_FLOAT):
    real ~= multiplier * 2^(shift - 31).

    ``q = frexp(real, &shift)`` in double, ``q_fixed = round(q * 2^31)`` (halves away from
    zero); a q_fixed of exactly 2^31 becomes 2^30 with shift + 1; a shift below -31 flushes
    to (0, 0).  A positive real gives a multiplier in [2^30, 2^31); a negative one (negative
    per-channel weight scales) one in [-2^31, -2^30], where -2^31 is kept as it is (only +2^31
    is halved, as in the C).  The shift is not clamped above (the single-rounding build's
    shift <= 30 saturation is not what the pinned build does).
    """
    real = float(real)
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = int(tflite_round(q * (1 << 31)))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift = 0
        q_fixed = 0
    return q_fixed, shift


def quantize_multiplier_array(reals) -> tuple:
    """Per-channel quantize_multiplier: returns (int32 multipliers, int32 shifts).  The same
    steps on arrays (np.frexp is math.frexp elementwise; a zero gives (0, 0) either way);
    non-finite reals go through quantize_multiplier, which rejects them."""
    reals = np.atleast_1d(np.asarray(reals, dtype=np.float64))
    if not np.all(np.isfinite(reals)):
        pairs = [quantize_multiplier(float(r)) for r in reals]
        return (np.array([p[0] for p in pairs], dtype=np.int32),
                np.array([p[1] for p in pairs], dtype=np.int32))
    q, shift = np.frexp(reals)
    q_fixed = tflite_round(q * (1 << 31)).astype(np.int64)
    shift = shift.astype(np.int64)
    top = q_fixed == (1 << 31)
    q_fixed[top] //= 2
    shift[top] += 1
    flush = shift < -31
    q_fixed[flush] = 0
    shift[flush] = 0
    return q_fixed.astype(np.int32), shift.astype(np.int32)


def wrap_int32(x):
    x = np.asarray(x, dtype=np.int64)
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _trunc_div(a, b):
    """C integer division (toward zero) for int64 arrays."""
    q = np.abs(a) // b
    return np.where(a < 0, -q, q)


def saturating_rounding_doubling_high_mul(a, b):
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    overflow = (a == b) & (a == INT32_MIN)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    res = _trunc_div(ab + nudge, 1 << 31)
    return np.where(overflow, INT32_MAX, res).astype(np.int64)


def rounding_divide_by_pot(x, exponent):
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0).astype(np.int64)
    return (x >> exponent) + (remainder > threshold).astype(np.int64)


def multiply_by_quantized_multiplier(x, multiplier, shift):
    """TFLite MultiplyByQuantizedMultiplier (double rounding), int32 semantics."""
    shift = np.asarray(shift, dtype=np.int64)
    left = np.where(shift > 0, shift, 0)
    right = np.where(shift > 0, 0, -shift)
    xl = wrap_int32(np.asarray(x, dtype=np.int64) * (np.int64(1) << left))
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(xl, multiplier), right)


def multiply_by_quantized_multiplier_smaller_than_one_exp(x, multiplier, shift):
    """TFLite MultiplyByQuantizedMultiplierSmallerThanOneExp (shift <= 0)."""
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, multiplier),
                                  -np.asarray(shift, dtype=np.int64))


def activation_range(activation: str, scale: float, zero_point: int, dtype: str = "int8") -> tuple:
    """CalculateActivationRangeQuantized: the clamp bounds of a fused activation.

    TFLite divides in float32 (``6.0f / scale``); so does this, whatever type ``scale`` has.
    """
    qmin, qmax = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}[dtype]

    def q(v: float) -> int:
        return zero_point + int(tflite_round(np.float32(v) / np.float32(scale)))

    if activation in (None, "NONE"):
        return qmin, qmax
    if activation == "RELU":
        return max(qmin, q(0.0)), qmax
    if activation == "RELU6":
        return max(qmin, q(0.0)), min(qmax, q(6.0))
    if activation == "RELU_N1_TO_1":
        return max(qmin, q(-1.0)), min(qmax, q(1.0))
    raise ValueError(f"unsupported fused activation {activation}")


def multiply_by_quantized_multiplier_int(x: int, multiplier: int, shift: int) -> int:
    """multiply_by_quantized_multiplier for one Python int (the same int32 semantics, about
    30x faster than the array version on scalars: for searches that call it many times)."""
    left, right = (shift, 0) if shift > 0 else (0, -shift)
    x = ((x << left) + (1 << 31)) % (1 << 32) - (1 << 31)          # wrap to int32
    if x == multiplier == INT32_MIN:
        high = INT32_MAX
    else:
        ab = x * multiplier
        num = ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30))
        high = abs(num) >> 31
        high = -high if num < 0 else high                           # C division: toward zero
    mask = (1 << right) - 1
    threshold = (mask >> 1) + (1 if high < 0 else 0)
    return (high >> right) + (1 if (high & mask) > threshold else 0)
