/* te_requantize_s16.c - requantize int16 -> int16.  Contract in te_requantize_s16.h. */
#include "te_requantize_s16.h"

void te_requantize_s16(const int16_t *in, int16_t *out, int32_t size, int32_t in_zp, int32_t out_zp,
                       int32_t mult, int32_t shift)
{
    int32_t i;
    for (i = 0; i < size; i++) {
        const int32_t v = te_mbqm((int32_t)in[i] - in_zp, mult, shift) + out_zp;
        out[i] = (int16_t)te_clamp_i32(v, -32768, 32767);
    }
}
