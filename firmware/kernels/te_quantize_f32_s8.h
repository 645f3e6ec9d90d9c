/*
 * te_quantize_f32_s8 - QUANTIZE float32 -> int8 (TFLite Micro reference AffineQuantize).
 *
 * Contract:
 *   in        : float32, `size` elements; out: int8_t, `size` elements (elementwise).
 *               out may start at the same address as in (each output is written after its
 *               input, and at a lower or equal byte offset).
 *   scale     : the output scale as float32 (> 0); zero_point in [-128, 127].
 *   out = clamp(round_half_away_from_zero(x / scale) + zero_point), the division in
 *   float32 exactly as TFLite Micro does it.  NaN inputs give zero_point.
 * No scratch memory.
 */
#ifndef TE_QUANTIZE_F32_S8_H
#define TE_QUANTIZE_F32_S8_H

#include "te_common.h"

void te_quantize_f32_s8(const float *in, int8_t *out, int32_t size, float scale, int32_t zero_point);

/* std::round(float) without libm, for |x| < 2^31; larger magnitudes saturate, NaN gives 0. */
static inline int32_t te_round_f32_to_i32(float x)
{
    int32_t i;
    float frac;
    if (!(x < 2147483520.0f)) {   /* also catches +inf; NaN is handled below */
        return x != x ? 0 : TE_INT32_MAX;
    }
    if (x < -2147483648.0f) {
        return TE_INT32_MIN;
    }
    i = (int32_t)x;                 /* truncation toward zero, exact */
    frac = x - (float)i;            /* exact */
    if (frac >= 0.5f) {
        i++;
    } else if (frac <= -0.5f) {
        i--;
    }
    return i;
}

/* One element: clamp(round(x / scale) + zero_point, lo, hi), zero_point for NaN; the sum in
 * int64 so saturated values cannot overflow. */
static inline int32_t te_quantize_f32_elem(float x, float scale, int32_t zero_point, int32_t lo,
                                           int32_t hi)
{
    const int64_t v = (int64_t)te_round_f32_to_i32(x / scale) + zero_point;
    return (int32_t)(v < lo ? lo : (v > hi ? hi : v));
}

#endif /* TE_QUANTIZE_F32_S8_H */
