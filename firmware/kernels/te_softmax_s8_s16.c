/* te_softmax_s8_s16.c - int8 -> int16 SOFTMAX.  Contract in te_softmax_s8_s16.h. */
#include "te_softmax_s8_s16.h"

void te_softmax_s8_s16(const int8_t *in, int16_t *out, int32_t outer, int32_t depth,
                       const int32_t *exp_lut)
{
    int32_t i;
    for (i = 0; i < outer; i++) {
        const int8_t *row = in + i * depth;
        int16_t *orow = out + i * depth;
        const int32_t max = te_softmax_row_max(row, depth);
        int exponent;
        const int32_t scale = te_softmax_row_scale(row, depth, max, exp_lut, 16, &exponent);
        int32_t c;
        for (c = 0; c < depth; c++) {
            const int32_t e = exp_lut[max - row[c]];
            orow[c] = (int16_t)te_clamp_i32(te_rdbpot(te_srdhm(scale, e), exponent) - 32768,
                                            -32768, 32767);
        }
    }
}
