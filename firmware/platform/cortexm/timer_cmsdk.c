/*
 * timer_cmsdk.c - instruction count of te_invoke() under QEMU (mps2 boards).
 *
 * CMSDK APB TIMER0 at 0x40000000 counts down at 25 MHz of QEMU's virtual
 * clock.  With "-icount shift=6" every guest instruction advances that clock
 * by 64 ns, i.e. 1.6 ticks, so instructions = ticks * 40 / 64.  The counter
 * wraps after 2^32 ticks (about 2.68e9 instructions): a longer inference
 * reports TE_TIMER_WRAPPED (0xFFFFFFFF) instead of a wrong count.
 */
#include <stdint.h>

#include "te_platform.h"

#define TE_TIMER0_CTRL (*(volatile uint32_t *)0x40000000u)
#define TE_TIMER0_VALUE (*(volatile uint32_t *)0x40000004u)
#define TE_TIMER0_RELOAD (*(volatile uint32_t *)0x40000008u)
#define TE_TIMER0_INTSTATUS (*(volatile uint32_t *)0x4000000Cu)
#define TE_TIMER_WRAPPED 0xFFFFFFFFu

const char *const te_timer_label = "TE_INSTRUCTIONS";

static uint32_t g_start;

void te_timer_start(void)
{
    TE_TIMER0_CTRL = 0u;
    TE_TIMER0_RELOAD = 0xFFFFFFFFu;
    TE_TIMER0_VALUE = 0xFFFFFFFFu;
    TE_TIMER0_INTSTATUS = 1u; /* clear the "reached zero" flag */
    /* enable + interrupt flag on wrap (the NVIC line stays disabled: no interrupt is taken) */
    TE_TIMER0_CTRL = 1u | (1u << 3);
    g_start = TE_TIMER0_VALUE;
}

uint32_t te_timer_stop(void)
{
    const uint32_t ticks = g_start - TE_TIMER0_VALUE;
    if ((TE_TIMER0_INTSTATUS & 1u) != 0u) {
        return TE_TIMER_WRAPPED;
    }
    return (uint32_t)(((uint64_t)ticks * 40u) / 64u);
}

/* Disabling the timer freezes its value (QEMU's ptimer keeps the count); enabling it again
 * continues from there, so paused time is not counted by any later reading. */
uint32_t te_timer_pause(void)
{
    TE_TIMER0_CTRL = 0u;
    return te_timer_stop();
}

void te_timer_resume(void)
{
    TE_TIMER0_CTRL = 1u | (1u << 3);
}
