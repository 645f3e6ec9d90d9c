/* te_unpack_channels.c - bit-packed per-channel parameters -> the kernel's table.
 * Contract: te_unpack_channels.h.
 *
 * Per channel (record c) the decoder takes one 64-bit window of the stream, split at the
 * first bit of the acc field, q = 96 + c * S + wm (bits from packed[0]):
 *   A = bits q - 32 .. q - 1: the mult field in its top wm bits (previous bits below),
 *   B = bits q .. q + 31: the acc field in its low wa bits, the shift byte's field above.
 * With e = (q - 1) / 8 and s = (q - 1) % 8 + 1 (1..8), the words L0, L1, L2 read at bytes e - 4,
 * e, e + 4 and M = 2^(32 - s), A = hi(L0 * M) + lo(L1 * M) and B = hi(L1 * M) + lo(L2 * M):
 * one MUL, one UMULL and one UMLAL.  (e, M) only depend on c % 8, so a ring of (byte step,
 * M) entries, built once per call, replaces the bit arithmetic in the loop.  mult is
 * mult_base + ((A >> (31 - wm)) >> 1) (the extra shift makes wm = 0 give 0), acc is
 * acc_base + (B & mask(wa)) and the byte (byte_base + ((B >> wa) & mask(wb))) & 0xFF.
 * The loop keeps 9 pointers and masks in registers; the four bases and the mult shift are
 * read from two volatile 64-bit stack slots (one LDRD each per channel) so that the compiler
 * neither spills them one at a time nor keeps them in registers it does not have.
 * About 23 instructions per channel on Cortex-M7 plus ~130 per call and ~7 per group when
 * group < n (gcc 12, -O2); then the exception lists, if any, over the table.
 */
#include "te_unpack_channels.h"

/* TE_UNPACK_EXCEPTIONS 0 leaves out the code that applies exception lists: the compiler sets
 * it (KERNEL_SWITCHES in the generated Makefile) only where no table of the model has any. */
#ifndef TE_UNPACK_EXCEPTIONS
#define TE_UNPACK_EXCEPTIONS 1
#endif

#include "te_dsp.h"

/* Little-endian 32-bit load from any byte address (a plain LDR on Armv7-M). */
static inline uint32_t te_ld32(const uint8_t *p)
{
    return (uint32_t)te_read_w(p);
}

/* The multipliers of a table whose mult entries hold codes f (< 2^24), K = khi 2^32 + klo
 * in [2^63, 2^64): with hi = (f K) >> 32 (< 2^56) and t = hi >> 55, m = round(hi / 2^(24+t)),
 * 2^31 read as 2^30 (chanpack.derive_mult).  About 17 instructions per channel. */
static void te_derive_multipliers(int32_t *table, int32_t n, int32_t group, uint32_t klo,
                                  uint32_t khi)
{
    for (int32_t left = n; left > 0;) {
        const int32_t r = group < left ? group : left;
        uint32_t *m = (uint32_t *)(void *)(table + r);
        for (int32_t i = 0; i < r; ++i) {
            const uint32_t f = m[i];
            const uint64_t hi = (uint64_t)f * khi + (uint32_t)(((uint64_t)f * klo) >> 32);
            const uint32_t h32 = (uint32_t)(hi >> 32), l32 = (uint32_t)hi;
            const uint32_t t = h32 >> 23;                       /* hi >> 55: 0 or 1 */
            /* hi >> (24 + t), rounded by bit 23 + t of hi (32-bit shifts only) */
            const uint32_t v = (((h32 << 8) | (l32 >> 24)) >> t) + ((l32 >> (23u + t)) & 1u);
            m[i] = (v >> 31) ? 0x40000000u : v;
        }
        table += 2 * r + (r + 3) / 4;
        left -= r;
    }
}

/* Little-endian 16-bit load from any byte address (a plain LDRH on Armv7-M). */
static inline uint32_t te_ld16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* One ring entry: the next record's window is `d` bytes further, multiplier `m`. */
struct te_step {
    uint32_t d, m;
    const struct te_step *next;
};

void te_unpack_channels(const uint32_t *packed, int32_t n, int32_t group, int32_t *table)
{
    if (n <= 0) {
        return;
    }
    const uint32_t hdr = packed[2];
    const uint32_t wa = (hdr >> 8) & 0x7Fu, wm = (hdr >> 16) & 0x7Fu, wb = hdr >> 24;
    const uint32_t derived = (hdr >> 23) & 1u;      /* multiplier codes; K in packed[3..4] */
    const uint32_t listed = (hdr >> 15) & 1u;       /* exception lists after the stream */
    const uint32_t w = wa + wm + wb, stride = w <= 57u ? w : 64u;
    const uint32_t ma = ~(0xFFFFFFFFu << wa), mb = (1u << wb) - 1u;
    volatile uint64_t kmult = ((uint64_t)packed[1] << 32) | (31u - wm);   /* mult_base, shift */
    volatile uint64_t kab = ((uint64_t)hdr << 32) | packed[0];            /* byte_base, acc_base */

    /* The ring: entry j for records c = j (mod its length), which is 8 / gcd(stride, 8) --
     * after that many records the window's bit offset repeats.  q - 1 of record c - 1
     * (record -1: 96 + wm - 1 - stride, within packed[0..2], 64 bits later with K) sets the
     * starting byte. */
    struct te_step ring[8];
    uint32_t q = 95u + (derived << 6) + wm - stride, prev = q >> 3;
    const uint8_t *p = (const uint8_t *)(const void *)packed + prev;
    struct te_step *e = ring;
    do {
        q += stride;
        const uint32_t qb = q >> 3;
        const struct te_step s = { qb - prev, 0x80000000u >> (q & 7u), e + 1 };
        *e = s;
        prev = qb;
        ++e;
    } while (((q + stride) ^ (95u + wm)) & 7u);
    e[-1].next = ring;
    const struct te_step *tp = ring;

    /* The table: groups of r channels, each r acc, r mult, then r bytes padded to a word
     * (9 r bytes when r % 4 == 0).  Runs of such groups go without recomputing anything but
     * three pointers; a group with padding (the last one, or any for group % 4 != 0) on its
     * own. */
    uint32_t left = (uint32_t)n;
    uint8_t *g = (uint8_t *)(void *)table;
    do {
        const uint32_t r = (uint32_t)group < left ? (uint32_t)group : left;
        uint32_t count = 1u;
        if ((r & 3u) == 0u) {
            count = left / r;
        }
        left -= count * r;
        uint8_t *const stop = g + 9u * r * count;         /* the end of the run's last bytes */
        if (r & 3u) {
            *(uint32_t *)(void *)((uintptr_t)stop & ~(uintptr_t)3u) = 0;   /* the padding */
        }
        /* r and the low 32 bits of stop, read back after every group (see kmult) */
        volatile uint64_t krun = ((uint64_t)(uint32_t)(uintptr_t)stop << 32) | r;
        uint64_t k = krun;
        for (;;) {
            int32_t *a = (int32_t *)(void *)g;
            int32_t *m = a + (uint32_t)k;
            uint8_t *b = (uint8_t *)(void *)(m + (uint32_t)k);
            uint8_t *const end = b + (uint32_t)k;
            do {
                const uint32_t sd = tp->d, sm = tp->m;
                tp = tp->next;
                p += sd;
                const uint32_t a0 = (uint32_t)(((uint64_t)te_ld32(p - 4) * sm) >> 32);
                const uint32_t b0 = te_ld32(p + 4) * sm;
                const uint64_t ab = (((uint64_t)b0 << 32) | a0) + (uint64_t)te_ld32(p) * sm;
                const uint32_t win_a = (uint32_t)ab, win_b = (uint32_t)(ab >> 32);
                const uint64_t km = kmult;
                *m++ = (int32_t)((uint32_t)(km >> 32) + ((win_a >> (uint32_t)km) >> 1));
                const uint64_t kb = kab;
                *a++ = (int32_t)((uint32_t)kb + (win_b & ma));
                *b++ = (uint8_t)((uint32_t)(kb >> 32) + ((win_b >> wa) & mb));
            } while (b != end);
            k = krun;
            if ((uint32_t)(uintptr_t)end == (uint32_t)(k >> 32)) {
                break;
            }
            g = end;                                      /* r % 4 == 0: no padding */
        }
        g = (uint8_t *)(void *)(((uintptr_t)stop + 3u) & ~(uintptr_t)3u);
    } while (left != 0u);
    if (derived) {
        te_derive_multipliers(table, n, group, packed[3], packed[4]);
    }
    if (TE_UNPACK_EXCEPTIONS && listed) {
        /* the exception lists (te_unpack_channels.h) after the stream: each entry's value at
         * its table offset, over what the stream gave (~6 instructions an entry) */
        const uint8_t *x = (const uint8_t *)(const void *)(packed + 3u + 2u * derived +
                                                            ((uint32_t)n * stride + 31u) / 32u);
        const uint32_t counts = te_ld32(x);
        const uint8_t *const acc_end = x + 4u + 6u * (counts & 0xFFFFu);
        const uint8_t *const end = acc_end + 3u * (counts >> 16);
        for (x += 4; x != acc_end; x += 6) {
            table[te_ld16(x)] = (int32_t)te_ld32(x + 2);
        }
        for (x = acc_end; x != end; x += 3) {
            ((uint8_t *)(void *)table)[te_ld16(x)] = x[2];
        }
    }
}
