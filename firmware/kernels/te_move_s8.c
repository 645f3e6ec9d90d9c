/* te_move_s8.c - forward byte move.  Contract: te_move_s8.h. */
#include "te_move_s8.h"

#include <string.h>

void te_move_s8(int8_t *dst, const int8_t *src, int32_t n)
{
#if defined(__thumb2__)
    if ((((uintptr_t)dst | (uintptr_t)src) & 3u) == 0u) {
        for (int32_t i = n >> 4; i > 0; --i) {
            /* all 16 bytes are loaded before any is stored: safe for dst <= src */
            __asm__ volatile("ldmia %1!, {r4-r7}\n\tstmia %0!, {r4-r7}"
                             : "+r"(dst), "+r"(src)
                             :
                             : "r4", "r5", "r6", "r7", "memory");
        }
        n &= 15;
    }
#endif
    for (int32_t i = n >> 2; i > 0; --i) {
        uint32_t w;                /* one unaligned LDR / STR on Armv7-M (inlined memcpy) */
        memcpy(&w, src, 4);
        memcpy(dst, &w, 4);
        src += 4;
        dst += 4;
    }
    for (int32_t i = n & 3; i > 0; --i) {
        *dst++ = *src++;
    }
}
