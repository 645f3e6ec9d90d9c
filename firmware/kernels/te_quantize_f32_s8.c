/* te_quantize_f32_s8.c - QUANTIZE float32 -> int8.  Contract in te_quantize_f32_s8.h. */
#include "te_quantize_f32_s8.h"

void te_quantize_f32_s8(const float *in, int8_t *out, int32_t size, float scale, int32_t zero_point)
{
    int32_t i;
    for (i = 0; i < size; i++) {
        out[i] = (int8_t)te_quantize_f32_elem(in[i], scale, zero_point, -128, 127);
    }
}
