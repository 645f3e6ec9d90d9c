/* te_log_softmax_s8.c - int8 LOG_SOFTMAX.  Contract in te_log_softmax_s8.h. */
#include "te_log_softmax_s8.h"

#include "te_softmax_s8.h"   /* te_softmax_row_max */

void te_log_softmax_s8(const int8_t *in, int8_t *out, int32_t outer, int32_t depth,
                       const int32_t *exp_lut, int32_t in_mult, int32_t in_shift,
                       int32_t rev_div, int32_t rev_shift, int32_t diff_min)
{
    int32_t i;
    for (i = 0; i < outer; i++) {
        const int8_t *row = in + i * depth;
        int8_t *orow = out + i * depth;
        const int32_t max = te_softmax_row_max(row, depth);
        int32_t sum = 0;
        int32_t c;
        int32_t log_sum, adjusted_diff_min, rescaled_min;
        for (c = 0; c < depth; c++) {
            sum = te_fp_add(sum, te_rdbpot(exp_lut[max - row[c]], 12));   /* Q12.19 */
        }
        log_sum = te_fp_log_x_ge_1(sum, 12, 5);                           /* Q5.26 */
        rescaled_min = te_mbqm(te_fp_add(log_sum, TE_INT32_MIN), rev_div, rev_shift);
        adjusted_diff_min = te_max_i32(diff_min - 1, rescaled_min);
        for (c = 0; c < depth; c++) {
            const int32_t diff = (int32_t)row[c] - max;
            if (diff > adjusted_diff_min) {
                const int32_t in_q5 = te_mbqm(diff, in_mult, in_shift);
                orow[c] = te_sat_s8(te_rdbpot(te_fp_sub(in_q5, log_sum), 31 - 5 - 4) + 127);
            } else {
                orow[c] = -128;
            }
        }
    }
}
