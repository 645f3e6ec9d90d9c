/* te_unpack_channels.c - bit-packed per-channel parameters -> the kernel's table.
 * Contract: te_unpack_channels.h. */
#include "te_unpack_channels.h"

#include <string.h>

/* The low `width` bits (0..32) set. */
static uint32_t te_low_mask(uint32_t width)
{
    return width ? 0xFFFFFFFFu >> (32u - width) : 0u;
}

/* Bits s .. s+31 of the 64-bit value hi:lo, for s in [0, 31]. */
static inline uint32_t te_funnel(uint32_t lo, uint32_t hi, uint32_t s)
{
    return (lo >> s) | ((hi << 1) << (31u - s));
}

void te_unpack_channels(const uint32_t *packed, int32_t n, int32_t group, int32_t *table)
{
    const uint32_t acc_base = packed[0], mult_base = packed[1];
    const uint32_t byte_base = packed[2] & 0xFFu;
    const uint32_t wa = (packed[2] >> 8) & 0xFFu, wm = (packed[2] >> 16) & 0xFFu;
    const uint32_t wb = packed[2] >> 24;
    const uint32_t w = wa + wm + wb, stride = w <= 57u ? w : 64u;
    const uint32_t ma = te_low_mask(wa), mm = te_low_mask(wm), mb = te_low_mask(wb);
    const uint8_t *stream = (const uint8_t *)(const void *)(packed + 3);
    uint32_t pos = 0;   /* bit position of the next record */
    int32_t c = 0;
    while (c < n) {
        const int32_t r = n - c < group ? n - c : group;
        int32_t *acc = table, *mult = table + r;
        uint8_t *bytes = (uint8_t *)(void *)(table + 2 * r);
        for (int32_t j = 0; j < r; ++j) {
            uint32_t lo, hi;
            const uint8_t *p = stream + (pos >> 3);
            memcpy(&lo, p, 4);
            memcpy(&hi, p + 4, 4);
            const uint32_t s = pos & 7u;
            const uint32_t rec_lo = te_funnel(lo, hi, s), rec_hi = hi >> s;  /* record bits 0..56 */
            const uint32_t t = te_funnel(rec_lo, rec_hi, wm);                /* acc, byte */
            mult[j] = (int32_t)(mult_base + (rec_lo & mm));
            acc[j] = (int32_t)(acc_base + (t & ma));
            bytes[j] = (uint8_t)(byte_base + ((t >> wa) & mb));
            pos += stride;
        }
        for (int32_t j = r; j < ((r + 3) & ~3); ++j) {
            bytes[j] = 0;
        }
        table += 2 * r + (r + 3) / 4;
        c += r;
    }
}
