/* te_transpose_grad_input_f32.c - TRANSPOSE input gradient.  Contract:
 * te_transpose_grad_input_f32.h. */
#include "te_transpose_grad_input_f32.h"

#include <stddef.h>

void te_transpose_grad_input_f32(const float *grad_out, float *grad_in, const int32_t *in_dims,
                                 const int32_t *perm)
{
    /* stride in grad_out of one step along each input axis */
    size_t out_stride[5];
    size_t in_stride[5];
    size_t s = 1;
    for (int32_t d = 4; d >= 0; --d) {
        out_stride[d] = s;
        s *= (size_t)in_dims[perm[d]];
    }
    for (int32_t d = 0; d < 5; ++d) {
        in_stride[perm[d]] = out_stride[d];
    }
    for (int32_t i0 = 0; i0 < in_dims[0]; ++i0) {
        for (int32_t i1 = 0; i1 < in_dims[1]; ++i1) {
            for (int32_t i2 = 0; i2 < in_dims[2]; ++i2) {
                for (int32_t i3 = 0; i3 < in_dims[3]; ++i3) {
                    const size_t base = (size_t)i0 * in_stride[0] + (size_t)i1 * in_stride[1]
                                        + (size_t)i2 * in_stride[2] + (size_t)i3 * in_stride[3];
                    for (int32_t i4 = 0; i4 < in_dims[4]; ++i4) {
                        *grad_in++ = grad_out[base + (size_t)i4 * in_stride[4]];
                    }
                }
            }
        }
    }
}
