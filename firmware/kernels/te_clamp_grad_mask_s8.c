/* te_clamp_grad_mask_s8.c - pack the clamp's 1-bit mask.  Contract: te_clamp_grad_mask_s8.h. */
#include "te_clamp_grad_mask_s8.h"

void te_clamp_grad_mask_s8(const int8_t *output, int32_t n, int32_t act_min, int32_t act_max,
                           uint8_t *mask)
{
    for (int32_t base = 0; base < n; base += 8) {
        uint32_t bits = 0u;
        const int32_t end = n - base < 8 ? n - base : 8;
        for (int32_t k = 0; k < end; ++k) {
            const int32_t q = output[base + k];
            bits |= (uint32_t)(q > act_min && q < act_max) << k;
        }
        mask[base / 8] = (uint8_t)bits;
    }
}
