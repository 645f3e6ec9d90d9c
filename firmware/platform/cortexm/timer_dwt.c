/*
 * timer_dwt.c - cycle count of te_invoke() on a real Cortex-M4/M7 board,
 * with the DWT cycle counter (it reads 0 under QEMU: use timer_cmsdk.c there).
 */
#include <stdint.h>

#include "te_platform.h"

#define TE_DEMCR (*(volatile uint32_t *)0xE000EDFCu)
#define TE_DWT_CTRL (*(volatile uint32_t *)0xE0001000u)
#define TE_DWT_CYCCNT (*(volatile uint32_t *)0xE0001004u)
#define TE_DWT_LAR (*(volatile uint32_t *)0xE0001FB0u)

const char *const te_timer_label = "TE_CYCLES";

static uint32_t g_start;

void te_timer_start(void)
{
    TE_DEMCR |= 1u << 24;       /* TRCENA */
    TE_DWT_LAR = 0xC5ACCE55u;   /* unlock (Cortex-M7) */
    TE_DWT_CTRL |= 1u;          /* CYCCNTENA */
    g_start = TE_DWT_CYCCNT;
}

uint32_t te_timer_stop(void)
{
    return TE_DWT_CYCCNT - g_start;
}

/* Clearing CYCCNTENA stops the cycle counter; setting it again continues the count. */
uint32_t te_timer_pause(void)
{
    TE_DWT_CTRL &= ~1u;
    return TE_DWT_CYCCNT - g_start;
}

void te_timer_resume(void)
{
    TE_DWT_CTRL |= 1u;
}
