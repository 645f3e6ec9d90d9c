/* te_quantize_f32_s16.c - QUANTIZE float32 -> int16.  Contract in te_quantize_f32_s16.h. */
#include "te_quantize_f32_s16.h"

void te_quantize_f32_s16(const float *in, int16_t *out, int32_t size, float scale, int32_t zero_point)
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
            out[i] = (int16_t)(v < -32768 ? -32768 : (v > 32767 ? 32767 : v));
        }
    }
}
