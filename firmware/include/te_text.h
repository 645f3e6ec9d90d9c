/*
 * te_text.h - the firmware runners' text output (firmware/main.c, firmware/train_main.c): a
 * line buffer flushed through te_puts, decimal numbers without printf (no allocation, no
 * 64-bit division).  Static functions: include it in one .c file.
 */
#ifndef TE_TEXT_H
#define TE_TEXT_H

#include <stdint.h>

#include "te_platform.h"

static char g_line[200];
static uint32_t g_len;

static void out_flush(void)
{
    if (g_len > 0) {
        g_line[g_len] = '\0';
        te_puts(g_line);
        g_len = 0;
    }
}

static void out_char(char c)
{
    if (g_len + 1 >= sizeof(g_line)) {
        out_flush();
    }
    g_line[g_len++] = c;
}

static void out_str(const char *s)
{
    while (*s != '\0') {
        out_char(*s++);
    }
}

/* Decimal digits of v.  No 64-bit division: it would link libgcc's __aeabi_uldivmod
 * (~700 bytes of Flash).  v is divided by 10 as four 16-bit limbs, most significant
 * first, each step a 32-bit divide of (remainder << 16 | limb) < 10 << 16. */
static void out_u64(uint64_t v)
{
    uint32_t limb[4] = {(uint32_t)(v >> 48), (uint32_t)(v >> 32) & 0xFFFFu,
                        (uint32_t)v >> 16, (uint32_t)v & 0xFFFFu};
    char digits[20];
    int n = 0;
    uint32_t rest;
    do {
        uint32_t rem = 0u;
        rest = 0u;
        for (int i = 0; i < 4; ++i) {
            const uint32_t cur = (rem << 16) | limb[i];
            limb[i] = cur / 10u;
            rem = cur % 10u;
            rest |= limb[i];
        }
        digits[n++] = (char)('0' + rem);
    } while (rest != 0u);
    while (n > 0) {
        out_char(digits[--n]);
    }
}

static void out_u32(uint32_t v)
{
    out_u64(v);
}

/* "TE_ERROR <what><detail>" and exit 1 (detail may be NULL). */
static void fail(const char *what, const char *detail)
{
    out_str("TE_ERROR ");
    out_str(what);
    if (detail != 0) {
        out_str(detail);
    }
    out_char('\n');
    out_flush();
    te_exit(1);
}

static void line_u32(const char *key, uint32_t v)
{
    out_str(key);
    out_char(' ');
    out_u32(v);
    out_char('\n');
}

#endif /* TE_TEXT_H */
