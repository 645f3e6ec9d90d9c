/* te_requantize_s8_s16.c - requantize int8 -> int16.  Contract in te_requantize_s8_s16.h. */
#include "te_requantize_s8_s16.h"

void te_requantize_s8_s16(const int8_t *in, int16_t *out, int32_t size, int32_t in_zp, int32_t out_zp,
                          int32_t mult, int32_t shift)
{
    int32_t i;
    for (i = size - 1; i >= 0; i--) {
        const int32_t v = te_mbqm((int32_t)in[i] - in_zp, mult, shift) + out_zp;
        out[i] = (int16_t)te_clamp_i32(v, -32768, 32767);
    }
}
