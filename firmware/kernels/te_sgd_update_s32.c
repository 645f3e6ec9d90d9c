/* te_sgd_update_s32.c - SGD step on int32 biases.  Contract: te_sgd_update_s32.h. */
#include "te_sgd_update_s32.h"

#include "te_common.h"
#include "te_grad_common.h"

void te_sgd_update_s32(int32_t *bias, int32_t n, const float *grad, const float *grad_scale,
                       float lr, float momentum, float *velocity)
{
    const float step = -lr;
    for (int32_t c = 0; c < n; ++c) {
        float g = grad[c];
        if (grad_scale != 0) {
            g = g * grad_scale[c];
        }
        if (velocity != 0) {
            g = momentum * velocity[c] + g;
            velocity[c] = g;
        }
        float d = step * g;
        /* |d| >= 2^22 is already an integer; beyond +-2^32 the sum saturates anyway */
        d = d < -4294967296.0f ? -4294967296.0f : (d > 4294967296.0f ? 4294967296.0f : d);
        if (d > -4194304.0f && d < 4194304.0f) {
            d = te_round_half_even_f32(d);
        }
        const int64_t sum = (int64_t)bias[c] + (int64_t)d;
        bias[c] = sum < (int64_t)TE_INT32_MIN ? TE_INT32_MIN
                : (sum > (int64_t)TE_INT32_MAX ? TE_INT32_MAX : (int32_t)sum);
    }
}
