/* te_fold_acc_init_s32.c - acc_init = bias + input_offset * sum(weights) per channel.
 * Contract: te_fold_acc_init_s32.h. */
#include "te_fold_acc_init_s32.h"

void te_fold_acc_init_s32(int32_t *acc_init, const int32_t *bias, const int8_t *weights,
                          int32_t outer, int32_t n_all, int32_t inner, int32_t input_offset)
{
    for (int32_t c = 0; c < n_all; ++c) {
        int32_t sum = 0; /* |sum| <= 128 * outer * inner: no overflow for any real layer */
        for (int32_t o = 0; o < outer; ++o) {
            const int8_t *w = weights + ((int64_t)o * n_all + c) * inner;
            for (int32_t i = 0; i < inner; ++i) {
                sum += w[i];
            }
        }
        /* unsigned: wraps modulo 2^32 like the compile-time fold */
        const uint32_t acc = (uint32_t)(bias != 0 ? bias[c] : 0)
                           + (uint32_t)input_offset * (uint32_t)sum;
        acc_init[c] = (int32_t)acc;
    }
}
