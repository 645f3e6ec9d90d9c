/* te_quantize_f32_s8.c - QUANTIZE float32 -> int8.  Contract in te_quantize_f32_s8.h. */
#include "te_quantize_f32_s8.h"

void te_quantize_f32_s8(const float *in, int8_t *out, int32_t size, float scale, int32_t zero_point)
{
    int32_t i;
    for (i = 0; i < size; i++) {
        const float q = in[i] / scale;
        int32_t r = te_round_f32_to_i32(q);
        if (q != q) {
            r = 0;
        }
        /* r + zero_point in int64 so saturated values cannot overflow */
        {
            const int64_t v = (int64_t)r + zero_point;
            out[i] = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
        }
    }
}
