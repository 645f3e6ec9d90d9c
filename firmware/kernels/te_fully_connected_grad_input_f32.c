/* te_fully_connected_grad_input_f32.c - FULLY_CONNECTED input gradient.
 * Contract: te_fully_connected_grad_input_f32.h. */
#include "te_fully_connected_grad_input_f32.h"

#include <stddef.h>

#include "te_grad_common.h"

void te_fully_connected_grad_input_f32(const float *grad_out, const int8_t *weights,
                                       const float *weight_scale, float *grad_in,
                                       int32_t batches, int32_t in_features,
                                       int32_t out_features)
{
    te_zero_f32(grad_in, batches * in_features);
    for (int32_t b = 0; b < batches; ++b, grad_out += out_features, grad_in += in_features) {
        for (int32_t o = 0; o < out_features; ++o) {
            if (grad_out[o] == 0.0f) {
                continue;
            }
            const float g = grad_out[o] * weight_scale[o];
            const int8_t *w = weights + (size_t)o * in_features;
            for (int32_t i = 0; i < in_features; ++i) {
                grad_in[i] += g * (float)w[i];
            }
        }
    }
}
