/*
 * te_fixedpoint.h - gemmlowp fixed-point helpers for SOFTMAX and LOG_SOFTMAX (portable C99).
 *
 * Bit-exact twins of gemmlowp's fixedpoint.h and TFLite's GetReciprocal /
 * log_x_for_x_greater_than_or_equal_to_1 as TensorFlow Lite Micro uses them.  A value
 * "Qk" is the raw int32 of a FixedPoint<int32_t, k> (k integer bits, 31 - k fraction bits).
 * Wrapping additions are done in uint32_t so that no signed overflow (undefined behaviour)
 * can occur; the Python twin is tinyengine/ops/_gemmlowp.py.
 */
#ifndef TE_FIXEDPOINT_H
#define TE_FIXEDPOINT_H

#include "te_common.h"

static inline int32_t te_fp_add(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }
static inline int32_t te_fp_sub(int32_t a, int32_t b) { return (int32_t)((uint32_t)a - (uint32_t)b); }

static inline int32_t te_fp_sat_add(int32_t a, int32_t b)
{
    const int64_t s = (int64_t)a + (int64_t)b;
    return s > TE_INT32_MAX ? TE_INT32_MAX : (s < TE_INT32_MIN ? TE_INT32_MIN : (int32_t)s);
}

static inline int32_t te_fp_sat_sub(int32_t a, int32_t b)
{
    const int64_t s = (int64_t)a - (int64_t)b;
    return s > TE_INT32_MAX ? TE_INT32_MAX : (s < TE_INT32_MIN ? TE_INT32_MIN : (int32_t)s);
}

/* CountLeadingZeros of x as uint32 (32 for 0). */
static inline int te_fp_clz(uint32_t x)
{
    int n = 0;
    if (x == 0) {
        return 32;
    }
    while ((x & 0x80000000u) == 0) {
        x <<= 1;
        n++;
    }
    return n;
}

/* SaturatingRoundingMultiplyByPOT(Param): x * 2^exponent, saturating for exponent > 0,
 * rounding (RoundingDivideByPOT) for exponent < 0. */
static inline int32_t te_fp_sat_mul_pot(int32_t x, int exponent)
{
    if (exponent == 0) {
        return x;
    }
    if (exponent < 0) {
        return te_rdbpot(x, -exponent);
    }
    {
        const int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
        if (x > threshold) {
            return TE_INT32_MAX;
        }
        if (x < -threshold) {
            return TE_INT32_MIN;
        }
        return (int32_t)((uint32_t)x << exponent);
    }
}

/* gemmlowp RoundingHalfSum for int32. */
static inline int32_t te_fp_rounding_half_sum(int32_t a, int32_t b)
{
    const int64_t sum = (int64_t)a + (int64_t)b;
    const int64_t sign = sum >= 0 ? 1 : -1;
    return (int32_t)((sum + sign) / 2);
}

/* gemmlowp one_over_one_plus_x_for_x_in_0_1: Q0.31 in, Q0.31 out. */
static inline int32_t te_fp_one_over_one_plus_x(int32_t a)
{
    const int32_t half_denominator = te_fp_rounding_half_sum(a, TE_INT32_MAX);
    /* x = 48/17 - 32/17 * half_denominator, Q2.29 */
    int32_t x = te_fp_add(1515870810, te_srdhm(half_denominator, -1010580540));
    int i;
    for (i = 0; i < 3; i++) {
        const int32_t half_denominator_times_x = te_srdhm(half_denominator, x);
        const int32_t one_minus = te_fp_sub((int32_t)1 << 29, half_denominator_times_x);
        x = te_fp_add(x, te_fp_sat_mul_pot(te_srdhm(x, one_minus), 2));
    }
    return te_fp_sat_mul_pot(x, 1);
}

/* TFLite GetReciprocal: x is Q(x_integer_digits); returns the Q0.31 scale and sets the
 * number of bits over unit. */
static inline int32_t te_fp_get_reciprocal(int32_t x, int x_integer_digits, int *num_bits_over_unit)
{
    const int headroom_plus_one = te_fp_clz((uint32_t)x);
    const int32_t shifted_sum_minus_one =
        (int32_t)(((uint32_t)x << headroom_plus_one) - ((uint32_t)1 << 31));
    *num_bits_over_unit = x_integer_digits - headroom_plus_one;
    return te_fp_one_over_one_plus_x(shifted_sum_minus_one);
}

/* TFLite log_x_for_x_greater_than_or_equal_to_1_impl<output_bits, input_bits>. */
static inline int32_t te_fp_log_x_ge_1(int32_t z_a, int input_bits, int output_bits)
{
    const int accum_bits = output_bits + 1;
    const int32_t log_2 = 1488522236;
    const int32_t sqrt_sqrt_half = 1805811301;
    const int32_t sqrt_half = 1518500250;
    const int32_t one_quarter = 536870912;
    const int32_t alpha_n = 117049297;
    const int32_t alpha_d = 127690142;
    const int32_t alpha_i = 1057819769;
    const int32_t alpha_f = 638450708;
    const int32_t shifted_quarter = te_fp_sat_mul_pot(one_quarter, -accum_bits);

    const int z_a_headroom_plus_1 = te_fp_clz((uint32_t)z_a);
    const int32_t r_a_tmp = te_fp_sat_mul_pot(z_a, z_a_headroom_plus_1 - 1);
    const int32_t r_a_raw = te_fp_sat_mul_pot(te_srdhm(r_a_tmp, sqrt_half), 1);
    const int32_t z_a_pow_2_adj = te_fp_sat_add(
        te_fp_sat_mul_pot(input_bits - z_a_headroom_plus_1, 31 - accum_bits), shifted_quarter);
    const int32_t z_b = te_srdhm(z_a, sqrt_half);
    const int z_b_headroom = te_fp_clz((uint32_t)z_b) - 1;
    const int32_t r_b_raw = te_fp_sat_mul_pot(z_a, z_b_headroom);
    const int32_t z_b_pow_2_adj = te_fp_sat_sub(
        te_fp_sat_mul_pot(input_bits - z_b_headroom, 31 - accum_bits), shifted_quarter);
    const int32_t r = r_a_raw < r_b_raw ? r_a_raw : r_b_raw;
    const int32_t z_pow_2_adj = z_a_pow_2_adj > z_b_pow_2_adj ? z_a_pow_2_adj : z_b_pow_2_adj;

    const int32_t p = te_fp_rounding_half_sum(r, sqrt_sqrt_half);
    int32_t q = te_fp_sub(r, sqrt_sqrt_half);
    q = te_fp_add(q, q);
    {
        const int32_t common_sq = te_srdhm(q, q);
        const int32_t num = te_fp_add(te_srdhm(q, r), te_srdhm(te_srdhm(q, common_sq), alpha_n));
        const int32_t denom_minus_one_0 =
            te_fp_add(te_srdhm(p, te_fp_add(te_fp_add(alpha_i, q), te_srdhm(alpha_d, common_sq))),
                      te_srdhm(alpha_f, q));
        const int32_t recip_denom = te_fp_one_over_one_plus_x(denom_minus_one_0);
        const int32_t num_scaled = te_fp_sat_mul_pot(num, -accum_bits);
        return te_fp_sat_mul_pot(
            te_fp_add(te_srdhm(z_pow_2_adj, log_2), te_srdhm(num_scaled, recip_denom)),
            accum_bits - output_bits);
    }
}

#endif /* TE_FIXEDPOINT_H */
