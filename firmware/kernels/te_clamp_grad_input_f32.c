/* te_clamp_grad_input_f32.c - apply the clamp's mask.  Contract: te_clamp_grad_input_f32.h. */
#include "te_clamp_grad_input_f32.h"

void te_clamp_grad_input_f32(const float *grad_out, const uint8_t *mask, int32_t n,
                             float *grad_in)
{
    for (int32_t i = 0; i < n; ++i) {
        grad_in[i] = ((mask[i >> 3] >> (i & 7)) & 1u) != 0u ? grad_out[i] : 0.0f;
    }
}
