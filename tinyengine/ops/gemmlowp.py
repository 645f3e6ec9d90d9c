"""gemmlowp's fixed-point math in NumPy, bit for bit (``fixedpoint.h`` as TFLite uses it).

A ``FixedPoint<int32_t, k>`` value is carried as its raw int32 (held in int64 arrays);
``k`` is the number of integer bits.  Multiplication of two fixed-point values is
SaturatingRoundingDoublingHighMul of the raws (the integer bits add up); ``+`` and ``-``
wrap like int32.  Used by SOFTMAX, LOG_SOFTMAX and LOGISTIC (their C twins live in
firmware/kernels/te_fixedpoint.h).
"""
from __future__ import annotations

import math

import numpy as np

from tinyengine.quant import (INT32_MAX, INT32_MIN, rounding_divide_by_pot,
                              saturating_rounding_doubling_high_mul, wrap_int32)

srdhm = saturating_rounding_doubling_high_mul
rdbpot = rounding_divide_by_pot


def i64(x):
    return np.asarray(x, dtype=np.int64)


def add(a, b):
    return wrap_int32(i64(a) + i64(b))


def sub(a, b):
    return wrap_int32(i64(a) - i64(b))


def sat_add(a, b):
    return np.clip(i64(a) + i64(b), INT32_MIN, INT32_MAX)


def sat_sub(a, b):
    return np.clip(i64(a) - i64(b), INT32_MIN, INT32_MAX)


def sat_mul_pot(x, exponent: int):
    """SaturatingRoundingMultiplyByPOT<exponent>."""
    x = i64(x)
    if exponent == 0:
        return x
    if exponent < 0:
        return rdbpot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    shifted = wrap_int32(x << exponent)
    return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, INT32_MIN, shifted))


def sat_mul_pot_param(x, exponent):
    """TFLite SaturatingRoundingMultiplyByPOTParam (exponent >= 0, may be an array)."""
    x = i64(x)
    exponent = i64(exponent)
    threshold = wrap_int32((np.int64(1) << (31 - exponent)) - 1)
    shifted = wrap_int32(x << exponent)
    res = np.where(x > threshold, INT32_MAX, np.where(x < -threshold, INT32_MIN, shifted))
    return np.where(exponent == 0, x, res)


def rescale(x, src_bits: int, dst_bits: int):
    return sat_mul_pot(x, src_bits - dst_bits)


def rounding_half_sum(a, b):
    s = i64(a) + i64(b)
    sign = np.where(s >= 0, 1, -1)
    t = s + sign
    return np.where(t >= 0, t // 2, -((-t) // 2))  # C division (toward zero)


def clz32(x):
    """CountLeadingZeros of the value as uint32 (32 for zero)."""
    u = i64(x) & 0xFFFFFFFF
    out = np.full(u.shape, 32, dtype=np.int64)
    nz = u != 0
    # floor(log2) via frexp is exact for integers < 2^53
    _, e = np.frexp(u[nz].astype(np.float64))
    out[nz] = 32 - e.astype(np.int64)
    return out


def exp_on_interval_between_negative_one_quarter_and_0_excl(a):
    constant_term = 1895147668      # exp(-1/8) in Q0.31
    constant_1_over_3 = 715827883
    x = add(a, 1 << 28)
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = rdbpot(x4, 2)
    poly = rdbpot(add(srdhm(add(x4_over_4, x3), constant_1_over_3), x2), 1)
    return add(constant_term, srdhm(constant_term, add(x, poly)))


_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242))


def exp_on_negative_values(a, integer_bits: int):
    """exp(a) for a <= 0 given as Q(integer_bits); result Q0.31."""
    a = i64(a)
    frac_bits = 31 - integer_bits
    one_quarter = 1 << (frac_bits - 2)
    mask = one_quarter - 1
    a_mod = sub(a & mask, one_quarter)
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(rescale(a_mod, integer_bits, 0))
    remainder = sub(a_mod, a)
    for exponent, mult in _EXP_BARREL:
        if integer_bits > exponent:
            bit = 1 << (frac_bits + exponent)
            result = np.where((remainder & bit) != 0, srdhm(result, mult), result)
    if integer_bits > 5:
        clamp = -(1 << (36 - integer_bits))
        result = np.where(a < clamp, 0, result)
    return np.where(a == 0, INT32_MAX, result)


def one_over_one_plus_x_for_x_in_0_1(a):
    half_denominator = rounding_half_sum(a, INT32_MAX)
    x = add(1515870810, srdhm(half_denominator, -1010580540))   # 48/17 - 32/17 * d  (Q2.29)
    for _ in range(3):
        half_denominator_times_x = srdhm(half_denominator, x)
        one_minus = sub(1 << 29, half_denominator_times_x)
        x = add(x, rescale(srdhm(x, one_minus), 4, 2))
    return rescale(x, 1, 0)


def logistic(a, integer_bits: int):
    """gemmlowp::logistic of a Q(integer_bits) value; result Q0.31."""
    a = i64(a)
    positive = a > 0
    abs_input = np.where(positive, a, wrap_int32(-a))
    result_pos = one_over_one_plus_x_for_x_in_0_1(
        exp_on_negative_values(wrap_int32(-abs_input), integer_bits))
    result_neg = sub(INT32_MAX, result_pos)
    return np.where(a == 0, 1 << 30, np.where(positive, result_pos, result_neg))


def get_reciprocal(x, x_integer_digits: int):
    """TFLite GetReciprocal: returns (Q0.31 raw of 1/x-ish, num_bits_over_unit)."""
    x = i64(x)
    headroom_plus_one = clz32(x)
    num_bits_over_unit = x_integer_digits - headroom_plus_one
    shifted_sum_minus_one = wrap_int32(((x & 0xFFFFFFFF) << headroom_plus_one) - (1 << 31))
    return one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one), num_bits_over_unit


def log_x_for_x_greater_than_or_equal_to_1(input_raw, input_bits: int, output_bits: int):
    """TFLite log_x_for_x_greater_than_or_equal_to_1_impl<output_bits, input_bits>."""
    accum_bits = output_bits + 1
    log_2, sqrt_sqrt_half, sqrt_half, one_quarter = 1488522236, 1805811301, 1518500250, 536870912
    alpha_n, alpha_d, alpha_i, alpha_f = 117049297, 127690142, 1057819769, 638450708
    shifted_quarter = rescale(one_quarter, 0, accum_bits)

    z_a = i64(input_raw)
    z_a_headroom_plus_1 = clz32(z_a)
    r_a_tmp = sat_mul_pot_param(z_a, z_a_headroom_plus_1 - 1)
    r_a_raw = sat_mul_pot_param(srdhm(r_a_tmp, sqrt_half), 1)
    z_a_pow_2_adj = sat_add(sat_mul_pot_param(input_bits - z_a_headroom_plus_1, 31 - accum_bits),
                            shifted_quarter)
    z_b = srdhm(z_a, sqrt_half)
    z_b_headroom = clz32(z_b) - 1
    r_b_raw = sat_mul_pot_param(z_a, z_b_headroom)
    z_b_pow_2_adj = sat_sub(sat_mul_pot_param(input_bits - z_b_headroom, 31 - accum_bits),
                            shifted_quarter)
    r = np.minimum(r_a_raw, r_b_raw)
    z_pow_2_adj = np.maximum(z_a_pow_2_adj, z_b_pow_2_adj)

    p = rounding_half_sum(r, sqrt_sqrt_half)
    q = sub(r, sqrt_sqrt_half)
    q = add(q, q)
    common_sq = srdhm(q, q)
    num = add(srdhm(q, r), srdhm(srdhm(q, common_sq), alpha_n))
    denom_minus_one_0 = add(srdhm(p, add(add(alpha_i, q), srdhm(alpha_d, common_sq))),
                            srdhm(alpha_f, q))
    recip_denom = one_over_one_plus_x_for_x_in_0_1(denom_minus_one_0)
    num_scaled = rescale(num, 0, accum_bits)
    return rescale(add(srdhm(z_pow_2_adj, log_2), srdhm(num_scaled, recip_denom)),
                   accum_bits, output_bits)


# -- compile-time helpers (quantization_util.cc) -------------------------------------------
def preprocess_softmax_scaling(beta: float, input_scale: float, input_integer_bits: int) -> tuple:
    """PreprocessSoftmaxScaling (double rounding build): (multiplier, left_shift) of
    ``min(beta * input_scale * (1 << (31 - input_integer_bits)), 2^31 - 1)`` in double, left
    to right, through QuantizeMultiplierGreaterThanOne (the callers require a real > 1)."""
    from tinyengine.quant import quantize_multiplier

    real = min(beta * input_scale * float(1 << (31 - input_integer_bits)), float((1 << 31) - 1))
    return quantize_multiplier(real)


def calculate_input_radius(input_integer_bits: int, input_left_shift: int,
                           total_signed_bits: int = 31) -> int:
    max_input_rescaled = (1.0 * ((1 << input_integer_bits) - 1)
                          * float(1 << (total_signed_bits - input_integer_bits))
                          / float(1 << input_left_shift))
    return int(math.floor(max_input_rescaled))
