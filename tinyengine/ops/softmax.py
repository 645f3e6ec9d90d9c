"""SOFTMAX and LOG_SOFTMAX over the last axis, int8 in (int8 or int16 out for SOFTMAX).

Both follow TensorFlow Lite Micro's reference kernels (reference_ops::Softmax and
LogSoftmaxQuantized): the input difference to the row maximum is rescaled to Q5.26,
exponentiated with gemmlowp's fixed-point exp, summed in Q12.19, and the result divided
(SOFTMAX) or the log of the sum subtracted (LOG_SOFTMAX).

Because an int8 difference to the row maximum takes only 256 values, prepare() tabulates
exp(diff) at compile time (a const int32 LUT indexed by max - x); the C kernels only sum,
take the reciprocal / log and rescale, so they stay bit-exact and avoid the exp at run time.
"""
from __future__ import annotations

import numpy as np

from tinyengine.ops import OpDef, register, unsupported
from tinyengine.ops import gemmlowp as g
from tinyengine.ops.common import unary_io
from tinyengine.quant import multiply_by_quantized_multiplier, quantize_multiplier, tflite_scale

SCALED_DIFF_INTEGER_BITS = 5
ACCUM_INTEGER_BITS = 12


def _rows(t):
    depth = t.shape[-1] if t.shape else 1
    return t.size // depth, depth


def _check_common(node, graph):
    x, y = unary_io(node, graph)
    if x.dtype != "int8":
        raise unsupported(node, f"input dtype {x.dtype} (supported: int8)")
    if x.quant is None or x.quant.per_channel:
        raise unsupported(node, "input must be per-tensor quantized")
    if y.quant is None or y.quant.per_channel:
        raise unsupported(node, "output must be per-tensor quantized")
    if x.shape != y.shape and x.size != y.size:
        raise unsupported(node, f"input shape {x.shape} and output shape {y.shape} differ")
    if len(x.shape) < 1:
        raise unsupported(node, "input must have at least one dimension")
    return x, y


def _exp_lut(multiplier: int, left_shift: int, diff_min: int) -> np.ndarray:
    """exp(diff) in Q0.31 for diff = 0, -1, ..., -255 (index = -diff); 0 below diff_min."""
    diff = -np.arange(256, dtype=np.int64)
    rescaled = multiply_by_quantized_multiplier(diff, multiplier, left_shift)
    e = g.exp_on_negative_values(rescaled, SCALED_DIFF_INTEGER_BITS)
    return np.where(diff >= diff_min, e, 0).astype(np.int32)


def _exp_params(x, beta: float) -> dict:
    """Row geometry, input rescaling (beta folded in), diff_min and exp LUT of input x.

    softmax_common.cc CalculateSoftmaxParams (int8 input) and log_softmax.cc CalculateOpData:
    PreprocessSoftmaxScaling((double)beta, (double)input_scale, 5) with beta the float of
    SoftmaxOptions (LOG_SOFTMAX: 1.0), diff_min = -CalculateInputRadius(5, left_shift)."""
    mult, shift = g.preprocess_softmax_scaling(tflite_scale(beta), tflite_scale(x.quant.s),
                                               SCALED_DIFF_INTEGER_BITS)
    diff_min = -g.calculate_input_radius(SCALED_DIFF_INTEGER_BITS, shift)
    outer, depth = _rows(x)
    return {
        "outer": outer, "depth": depth,
        "input_multiplier": mult, "input_left_shift": shift, "diff_min": diff_min,
        "exp_lut": _exp_lut(mult, shift, diff_min),
    }


def _row_exps(x, p: dict) -> tuple:
    """Per row of x (reshaped to [outer, depth]): the difference to the row maximum, its
    Q5.26 rescaling, exp of that in Q0.31, and the Q12.19 sum of the exps at or above
    diff_min, as TFLite Micro computes them."""
    x = np.asarray(x).astype(np.int64).reshape(p["outer"], p["depth"])
    diff = x - x.max(axis=1, keepdims=True)
    rescaled = multiply_by_quantized_multiplier(diff, p["input_multiplier"], p["input_left_shift"])
    exp = g.exp_on_negative_values(rescaled, SCALED_DIFF_INTEGER_BITS)
    terms = np.where(diff >= p["diff_min"], g.rescale(exp, 0, ACCUM_INTEGER_BITS), 0)
    return diff, rescaled, exp, g.wrap_int32(terms.sum(axis=1, keepdims=True))


# -- SOFTMAX --------------------------------------------------------------------------------
@register
class Softmax(OpDef):
    name = "SOFTMAX"
    template = "ops/softmax.c.j2"
    kernels = ("te_softmax_s8.c", "te_softmax_s8_s16.c")

    def check(self, node, graph):
        x, y = _check_common(node, graph)
        beta = float(node.attrs.get("beta", 1.0))
        if not beta > 0:
            raise unsupported(node, f"beta {beta} (supported: beta > 0)")
        if y.dtype == "int8":
            if y.quant.zp != -128 or np.float32(y.quant.s) != np.float32(1.0 / 256):
                raise unsupported(node, f"int8 output quantization scale={y.quant.s} zp={y.quant.zp} "
                                  "(TFLite Micro requires scale 1/256, zero point -128)")
        elif y.dtype == "int16":
            # TF_LITE_ENSURE_NEAR(scale, 1.f / 65536, 0.001f * 1.f / 65536), all in float
            f32 = np.float32
            if y.quant.zp != -32768 or \
                    abs(f32(y.quant.s) - f32(1.0 / 65536)) > f32(0.001) * f32(1.0 / 65536):
                raise unsupported(node, f"int16 output quantization scale={y.quant.s} zp={y.quant.zp} "
                                  "(TFLite Micro requires scale 1/65536, zero point -32768)")
        else:
            raise unsupported(node, f"output dtype {y.dtype} (supported: int8, int16)")
        real = (tflite_scale(beta) * tflite_scale(x.quant.s)
                * float(1 << (31 - SCALED_DIFF_INTEGER_BITS)))
        if not real > 1.0:
            raise unsupported(node, f"beta * input scale = {beta * x.quant.s:g} is too small "
                              "(TFLite Micro needs beta * scale * 2^26 > 1)")

    def prepare(self, node, graph):
        x, y = unary_io(node, graph)
        p = _exp_params(x, float(node.attrs.get("beta", 1.0)))
        p["out_bits"] = 16 if y.dtype == "int16" else 8
        return p

    def reference(self, node, graph, inputs):
        _, y_t = unary_io(node, graph)
        p = node.params
        diff, _, exp, sum_of_exps = _row_exps(inputs[0], p)
        valid = diff >= p["diff_min"]
        scale, bits_over_unit = g.get_reciprocal(sum_of_exps, ACCUM_INTEGER_BITS)
        out_bits = p["out_bits"]
        # TFLM aborts (TFLITE_CHECK) when this exceeds 31 (int8 out: a sum of exps >= 512,
        # only possible for rows of 512+ nearly equal values); we clamp instead, as the C does.
        exponent = np.minimum(bits_over_unit + 31 - out_bits, 31)
        qmin, qmax = -(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1
        unsat = g.rdbpot(g.srdhm(scale, exp), exponent)
        out = np.where(valid, np.clip(unsat + qmin, qmin, qmax), qmin)
        return [out.astype(y_t.np_dtype).reshape(y_t.shape)]



# -- LOG_SOFTMAX ----------------------------------------------------------------------------
LOG_OUTPUT_INTEGER_BITS = 4


@register
class LogSoftmax(OpDef):
    name = "LOG_SOFTMAX"
    template = "ops/log_softmax.c.j2"
    kernels = ("te_log_softmax_s8.c",)

    def check(self, node, graph):
        x, y = _check_common(node, graph)
        if y.dtype != "int8":
            raise unsupported(node, f"output dtype {y.dtype} (supported: int8)")
        if np.float32(y.quant.s) != np.float32(16.0 / 256) or y.quant.zp != 127:
            raise unsupported(node, f"output quantization scale={y.quant.s} zp={y.quant.zp} "
                              "(TFLite Micro requires scale 16/256, zero point 127)")
        real = tflite_scale(x.quant.s) * float(1 << (31 - SCALED_DIFF_INTEGER_BITS))
        if not real > 1.0:
            raise unsupported(node, f"input scale {x.quant.s:g} is too small")

    def prepare(self, node, graph):
        x, _ = unary_io(node, graph)
        p = _exp_params(x, 1.0)
        # PreprocessLogSoftmaxScalingExp: (1 << (31 - left_shift)) / (double)multiplier through
        # QuantizeMultiplierSmallerThanOneExp (shift <= 0: left_shift >= 1 and multiplier >= 2^30)
        real_reverse = float(1 << (31 - p["input_left_shift"])) / float(p["input_multiplier"])
        rev_mult, rev_shift = quantize_multiplier(real_reverse)
        p.update(reverse_scaling_divisor=rev_mult, reverse_scaling_shift=rev_shift)
        return p

    def reference(self, node, graph, inputs):
        _, y_t = unary_io(node, graph)
        p = node.params
        diff, in_q5, _, sum_q12 = _row_exps(inputs[0], p)
        log_sum_q5 = g.log_x_for_x_greater_than_or_equal_to_1(sum_q12, ACCUM_INTEGER_BITS,
                                                               SCALED_DIFF_INTEGER_BITS)
        shifted_log_sum = g.wrap_int32(log_sum_q5 + g.INT32_MIN)
        adjusted_diff_min = np.maximum(
            p["diff_min"] - 1,
            multiply_by_quantized_multiplier(shifted_log_sum, p["reverse_scaling_divisor"],
                                             p["reverse_scaling_shift"]))
        out = g.rdbpot(g.sub(in_q5, log_sum_q5),
                       31 - SCALED_DIFF_INTEGER_BITS - LOG_OUTPUT_INTEGER_BITS) + 127
        out = np.where(diff > adjusted_diff_min, np.clip(out, -128, 127), -128)
        return [out.astype(np.int8).reshape(y_t.shape)]

