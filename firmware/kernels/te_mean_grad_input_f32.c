/* te_mean_grad_input_f32.c - MEAN input gradient.  Contract: te_mean_grad_input_f32.h. */
#include "te_mean_grad_input_f32.h"

#include "te_index.h"

#define TE_MEAN_GRAD_MAX_DIMS 6

void te_mean_grad_input_f32(const float *grad_out, float *grad_in, int32_t keep_ndim,
                            const int32_t *keep_shape, const int32_t *keep_strides,
                            int32_t red_ndim, const int32_t *red_shape,
                            const int32_t *red_strides, int32_t count)
{
    int32_t keep_idx[TE_MEAN_GRAD_MAX_DIMS] = {0};
    int32_t keep_off = 0;
    int32_t o = 0;
    do {
        const float g = grad_out[o++] / (float)count;
        int32_t red_idx[TE_MEAN_GRAD_MAX_DIMS] = {0};
        int32_t red_off = 0;
        do {
            grad_in[keep_off + red_off] = g;
        } while (te_index_next(red_idx, red_ndim, red_shape, red_strides, &red_off));
    } while (te_index_next(keep_idx, keep_ndim, keep_shape, keep_strides, &keep_off));
}
