/*
 * te_common.h - TinyEngine's shared fixed-point helpers (portable C99).
 *
 * Bit-exact with TensorFlow Lite Micro's integer arithmetic (double rounding,
 * gemmlowp semantics).  Every kernel includes this header; nothing here
 * allocates memory or depends on the target.
 */
#ifndef TE_COMMON_H
#define TE_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define TE_INT32_MIN ((int32_t)0x80000000)
#define TE_INT32_MAX ((int32_t)0x7fffffff)

static inline int32_t te_max_i32(int32_t a, int32_t b) { return a > b ? a : b; }
static inline int32_t te_min_i32(int32_t a, int32_t b) { return a < b ? a : b; }
static inline int32_t te_clamp_i32(int32_t x, int32_t lo, int32_t hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

/* gemmlowp SaturatingRoundingDoublingHighMul: (a * b * 2 + 2^31) >> 32, saturated. */
static inline int32_t te_srdhm(int32_t a, int32_t b)
{
    if (a == b && a == TE_INT32_MIN) {
        return TE_INT32_MAX;
    }
    const int64_t ab = (int64_t)a * (int64_t)b;
    const int64_t nudge = ab >= 0 ? (int64_t)(1 << 30) : (int64_t)(1 - (1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* gemmlowp RoundingDivideByPOT: x / 2^exponent rounded half away from zero. */
static inline int32_t te_rdbpot(int32_t x, int exponent)
{
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* TFLite MultiplyByQuantizedMultiplier: x * multiplier * 2^(shift - 31), double rounding. */
static inline int32_t te_mbqm(int32_t x, int32_t multiplier, int32_t shift)
{
    const int left = shift > 0 ? shift : 0;
    const int right = shift > 0 ? 0 : -shift;
    return te_rdbpot(te_srdhm((int32_t)((uint32_t)x << left), multiplier), right);
}

/* TFLite MultiplyByQuantizedMultiplierSmallerThanOneExp (shift <= 0). */
static inline int32_t te_mbqm_smaller_than_one(int32_t x, int32_t multiplier, int32_t shift)
{
    return te_rdbpot(te_srdhm(x, multiplier), -shift);
}

static inline int8_t te_sat_s8(int32_t x) { return (int8_t)te_clamp_i32(x, -128, 127); }

#endif /* TE_COMMON_H */
