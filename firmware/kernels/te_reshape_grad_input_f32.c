/* te_reshape_grad_input_f32.c - RESHAPE input gradient.  Contract: te_reshape_grad_input_f32.h. */
#include "te_reshape_grad_input_f32.h"

void te_reshape_grad_input_f32(const float *grad_out, float *grad_in, int32_t n)
{
    if (grad_in == grad_out) {
        return;
    }
    for (int32_t i = 0; i < n; ++i) {
        grad_in[i] = grad_out[i];
    }
}
