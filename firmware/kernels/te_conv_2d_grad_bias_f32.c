/* te_conv_2d_grad_bias_f32.c - bias gradient.  Contract: te_conv_2d_grad_bias_f32.h. */
#include "te_conv_2d_grad_bias_f32.h"

#include "te_grad_common.h"

void te_conv_2d_grad_bias_f32(const float *grad_out, int32_t rows, int32_t channels,
                              const float *filter_scale, float input_scale, float *grad_bias)
{
    te_zero_f32(grad_bias, channels);
    for (int32_t r = 0; r < rows; ++r, grad_out += channels) {
        for (int32_t c = 0; c < channels; ++c) {
            grad_bias[c] += grad_out[c];
        }
    }
    for (int32_t c = 0; c < channels; ++c) {
        grad_bias[c] *= filter_scale[c] * input_scale;
    }
}
