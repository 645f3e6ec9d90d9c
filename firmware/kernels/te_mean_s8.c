/* te_mean_s8.c - int8 MEAN over any axes.  Contract in te_mean_s8.h. */
#include "te_mean_s8.h"

#include "te_index.h"

/* Sum of the reduced index space starting at `base`. */
static int32_t te_mean_sum(const int8_t *base, int32_t red_ndim, const int32_t *red_shape,
                           const int32_t *red_strides)
{
    int32_t idx[TE_MEAN_MAX_DIMS] = {0};
    const int32_t last = red_ndim - 1;
    const int32_t n_in = red_shape[last];
    const int32_t s_in = red_strides[last];
    uint32_t sum = 0;
    int32_t off = 0;
    do {
        const int8_t *p = base + off;
        int32_t j;
        for (j = 0; j < n_in; j++) {
            sum += (uint32_t)(int32_t)p[j * s_in];
        }
    } while (te_index_next(idx, last, red_shape, red_strides, &off));
    return (int32_t)sum;
}

void te_mean_s8(const int8_t *in, int8_t *out, int32_t keep_ndim, const int32_t *keep_shape,
                const int32_t *keep_strides, int32_t red_ndim, const int32_t *red_shape,
                const int32_t *red_strides, int32_t count, int32_t in_zp, int32_t out_zp,
                int32_t mult, int32_t shift)
{
    int32_t idx[TE_MEAN_MAX_DIMS] = {0};
    const int32_t zp_total = (int32_t)((uint32_t)in_zp * (uint32_t)count);
    int32_t off = 0;
    int32_t o = 0;
    do {
        const int32_t sum = te_mean_sum(in + off, red_ndim, red_shape, red_strides);
        const int32_t shifted = (int32_t)((uint32_t)sum - (uint32_t)zp_total);
        out[o++] = te_sat_s8(te_mbqm(shifted, mult, shift) + out_zp);
    } while (te_index_next(idx, keep_ndim, keep_shape, keep_strides, &off));
}
