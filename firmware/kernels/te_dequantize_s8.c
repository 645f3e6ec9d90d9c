/* te_dequantize_s8.c - DEQUANTIZE int8 -> float32.  Contract in te_dequantize_s8.h. */
#include "te_dequantize_s8.h"

void te_dequantize_s8(const int8_t *in, float *out, int32_t size, float scale, int32_t zero_point)
{
    int32_t i;
    for (i = 0; i < size; i++) {
        out[i] = scale * (float)((int32_t)in[i] - zero_point);
    }
}
