/* te_pad_grad_input_f32.c - PAD input gradient.  Contract: te_pad_grad_input_f32.h. */
#include "te_pad_grad_input_f32.h"

#include <stddef.h>

void te_pad_grad_input_f32(const float *grad_out, float *grad_in, const int32_t *in_dims,
                           const int32_t *out_dims, const int32_t *pad_before)
{
    const int32_t row = in_dims[4];
    for (int32_t i0 = 0; i0 < in_dims[0]; ++i0) {
        for (int32_t i1 = 0; i1 < in_dims[1]; ++i1) {
            for (int32_t i2 = 0; i2 < in_dims[2]; ++i2) {
                for (int32_t i3 = 0; i3 < in_dims[3]; ++i3, grad_in += row) {
                    const size_t src =
                        ((((size_t)(i0 + pad_before[0]) * out_dims[1] + (i1 + pad_before[1]))
                              * out_dims[2] + (i2 + pad_before[2]))
                             * out_dims[3] + (i3 + pad_before[3]))
                            * out_dims[4] + pad_before[4];
                    for (int32_t i = 0; i < row; ++i) {
                        grad_in[i] = grad_out[src + i];
                    }
                }
            }
        }
    }
}
