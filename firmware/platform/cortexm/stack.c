/*
 * stack.c - stack high-water mark on a bare Cortex-M.
 *
 * The linker script reserves [__stack_bottom, __stack_top).  Painting fills
 * the part below the caller's frame with a pattern; the deepest word that no
 * longer holds it marks the most stack ever used since the paint.
 */
#include <stdint.h>

#include "te_platform.h"

#define TE_STACK_PATTERN 0xC5A3E1F7u
#define TE_STACK_MARGIN 64u /* bytes left unpainted below the current SP */

extern uint32_t __stack_bottom[];
extern uint32_t __stack_top[];

void te_stack_paint(void)
{
    uintptr_t sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    volatile uint32_t *p = __stack_bottom;
    while ((uintptr_t)p + TE_STACK_MARGIN < sp) {
        *p++ = TE_STACK_PATTERN;
    }
}

int32_t te_stack_used(void)
{
    const volatile uint32_t *p = __stack_bottom;
    while ((uintptr_t)p < (uintptr_t)__stack_top && *p == TE_STACK_PATTERN) {
        ++p;
    }
    return (int32_t)((uintptr_t)__stack_top - (uintptr_t)p);
}

uint32_t te_stack_size(void)
{
    return (uint32_t)((uintptr_t)__stack_top - (uintptr_t)__stack_bottom);
}
