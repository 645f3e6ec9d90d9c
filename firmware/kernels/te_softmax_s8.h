/*
 * te_softmax_s8 - int8 -> int8 SOFTMAX over the innermost dimension
 * (TFLite Micro reference_ops::Softmax, gemmlowp fixed point).
 *
 * Contract:
 *   in, out   : int8, [outer, depth] row-major (any tensor flattened so that the softmax
 *               axis is innermost).  out may be the same buffer as in.
 *   exp_lut[256] : Q0.31 exp of the rescaled input difference, indexed by
 *               (row max - x) in [0, 255]; 0 where the difference is below diff_min.
 *               Computed at compile time from beta and the input scale
 *               (tinyengine/ops/softmax.py); it carries input_beta_multiplier/shift.
 *   Output quantization is scale 1/256, zero point -128 (required by TFLite Micro).
 *   Rows whose sum of exps reaches 512 (only 512+ nearly equal values) make TFLite Micro
 *   abort; here the rounding exponent is clamped to 31 instead.
 * No scratch memory.
 */
#ifndef TE_SOFTMAX_S8_H
#define TE_SOFTMAX_S8_H

#include "te_fixedpoint.h"

void te_softmax_s8(const int8_t *in, int8_t *out, int32_t outer, int32_t depth,
                   const int32_t *exp_lut);

/* Row maximum of depth int8 values. */
static inline int32_t te_softmax_row_max(const int8_t *row, int32_t depth)
{
    int32_t m = -128;
    int32_t c;
    for (c = 0; c < depth; c++) {
        if (row[c] > m) {
            m = row[c];
        }
    }
    return m;
}

/* Sum of exps in Q12.19 and its reciprocal: returns the Q0.31 scale and sets the
 * rounding exponent for an output of out_bits bits. */
static inline int32_t te_softmax_row_scale(const int8_t *row, int32_t depth, int32_t max,
                                           const int32_t *exp_lut, int out_bits, int *exponent)
{
    int32_t sum = 0;
    int32_t c;
    int bits_over_unit;
    int32_t scale;
    for (c = 0; c < depth; c++) {
        sum = te_fp_add(sum, te_rdbpot(exp_lut[max - row[c]], 12));
    }
    scale = te_fp_get_reciprocal(sum, 12, &bits_over_unit);
    /* TFLM aborts when this exceeds 31 (int8 out: a sum of exps >= 512); clamp instead. */
    *exponent = bits_over_unit + 31 - out_bits > 31 ? 31 : bits_over_unit + 31 - out_bits;
    return scale;
}

#endif /* TE_SOFTMAX_S8_H */
