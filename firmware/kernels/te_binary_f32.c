/* te_binary_f32.c - ADD / SUB / MUL in float32.  Contract in te_binary_f32.h. */
#include "te_binary_f32.h"

void te_binary_f32(const float *a, const float *b, float *out, int32_t size, int32_t op,
                   float act_min, float act_max)
{
    int32_t i;
    for (i = 0; i < size; i++) {
        float v = op == TE_BINARY_F32_ADD ? a[i] + b[i]
                : op == TE_BINARY_F32_SUB ? a[i] - b[i] : a[i] * b[i];
        v = v < act_min ? act_min : v;
        out[i] = v > act_max ? act_max : v;
    }
}
