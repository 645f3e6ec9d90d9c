/* te_tanh_f32.c - TANH in float32.  Contract in te_tanh_f32.h. */
#include <math.h>

#include "te_tanh_f32.h"

void te_tanh_f32(const float *in, float *out, int32_t size)
{
    int32_t i;
    for (i = 0; i < size; i++) {
        out[i] = tanhf(in[i]);
    }
}
