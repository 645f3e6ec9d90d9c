/* te_quantize_f32_s16.c - QUANTIZE float32 -> int16.  Contract in te_quantize_f32_s16.h. */
#include "te_quantize_f32_s16.h"

void te_quantize_f32_s16(const float *in, int16_t *out, int32_t size, float scale, int32_t zero_point)
{
    int32_t i;
    for (i = 0; i < size; i++) {
        out[i] = (int16_t)te_quantize_f32_elem(in[i], scale, zero_point, -32768, 32767);
    }
}
