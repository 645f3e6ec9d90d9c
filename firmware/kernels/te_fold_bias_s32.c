/* te_fold_bias_s32.c - a trained bias into a fast kernel's table.
 * Contract: te_fold_bias_s32.h. */
#include "te_fold_bias_s32.h"

int32_t te_fold_bias_s32(int32_t *table, const int32_t *bias, const int32_t *offset,
                         int32_t limit, int32_t n, int32_t group)
{
    int32_t out = 0;
    for (int32_t c = 0; c < n; ++c) {
        /* unsigned: wraps modulo 2^32 like the compile-time fold */
        const uint32_t u = (uint32_t)bias[c] + (offset != 0 ? (uint32_t)offset[c] : 0u);
        const int32_t v = (int32_t)u;
        table[(c / 4) * group + c % 4] = v;
        const int64_t a = v < 0 ? -(int64_t)v : (int64_t)v;
        out += a > (int64_t)limit ? 1 : 0;
    }
    return out;
}
