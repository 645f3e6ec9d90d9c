/* te_softmax_s8.c - int8 -> int8 SOFTMAX.  Contract in te_softmax_s8.h. */
#include "te_softmax_s8.h"

void te_softmax_s8(const int8_t *in, int8_t *out, int32_t outer, int32_t depth,
                   const int32_t *exp_lut)
{
    int32_t i;
    for (i = 0; i < outer; i++) {
        const int8_t *row = in + i * depth;
        int8_t *orow = out + i * depth;
        const int32_t max = te_softmax_row_max(row, depth);
        int exponent;
        const int32_t scale = te_softmax_row_scale(row, depth, max, exp_lut, 8, &exponent);
        int32_t c;
        for (c = 0; c < depth; c++) {
            const int32_t e = exp_lut[max - row[c]];
            orow[c] = te_sat_s8(te_rdbpot(te_srdhm(scale, e), exponent) - 128);
        }
    }
}
