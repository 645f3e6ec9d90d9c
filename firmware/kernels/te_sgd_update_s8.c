/* te_sgd_update_s8.c - SGD step on int8 weights.  Contract: te_sgd_update_s8.h. */
#include "te_sgd_update_s8.h"

#include <stddef.h>

#include "te_grad_common.h"

void te_sgd_update_s8(int8_t *weights, int32_t outer, int32_t n_all, int32_t inner,
                      const int32_t *channels, int32_t n_channels, const float *grad,
                      const float *grad_scale, float lr, float momentum, float *velocity)
{
    const float step = -lr;
    for (int32_t o = 0; o < outer; ++o) {
        for (int32_t j = 0; j < n_channels; ++j) {
            const int32_t c = te_selected(channels, j);
            const size_t gk = ((size_t)o * n_channels + j) * inner;
            int8_t *w = weights + ((size_t)o * n_all + c) * inner;
            for (int32_t i = 0; i < inner; ++i) {
                float g = grad[gk + i];
                if (grad_scale != 0) {
                    g = g * grad_scale[c];
                }
                if (velocity != 0) {
                    g = momentum * velocity[gk + i] + g;
                    velocity[gk + i] = g;
                }
                float v = (float)w[i] + step * g;
                v = v < -127.0f ? -127.0f : (v > 127.0f ? 127.0f : v);
                w[i] = (int8_t)te_round_half_even_f32(v);
            }
        }
    }
}
