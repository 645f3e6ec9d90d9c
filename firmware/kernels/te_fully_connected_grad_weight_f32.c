/* te_fully_connected_grad_weight_f32.c - FULLY_CONNECTED weight gradient.
 * Contract: te_fully_connected_grad_weight_f32.h. */
#include "te_fully_connected_grad_weight_f32.h"

#include <stddef.h>

#include "te_grad_common.h"

void te_fully_connected_grad_weight_f32(const float *grad_out, const int8_t *input,
                                        int32_t input_zero_point, float input_scale,
                                        const float *weight_scale, float *grad_weights,
                                        int32_t batches, int32_t in_features,
                                        int32_t out_features, const int32_t *channels,
                                        int32_t n_channels)
{
    for (int32_t j = 0; j < n_channels; ++j, grad_weights += in_features) {
        const int32_t o = te_selected(channels, j);
        te_zero_f32(grad_weights, in_features);
        for (int32_t b = 0; b < batches; ++b) {
            const float g = grad_out[(size_t)b * out_features + o];
            if (g == 0.0f) {
                continue;
            }
            const int8_t *x = input + (size_t)b * in_features;
            for (int32_t i = 0; i < in_features; ++i) {
                grad_weights[i] += g * (float)(x[i] - input_zero_point);
            }
        }
        const float s = weight_scale[o] * input_scale;
        for (int32_t i = 0; i < in_features; ++i) {
            grad_weights[i] *= s;
        }
    }
}
