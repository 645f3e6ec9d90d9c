/*
 * startup.c - reset and fault handling for a bare Cortex-M (M4/M7).
 *
 * The core loads SP and PC from the vector table at the start of FLASH
 * (address 0x0 under QEMU; 0x08000000, aliased at 0, on an STM32).  Reset
 * enables the FPU, copies .data from FLASH, zeroes .bss, runs main() and
 * ends through te_exit() with main's return value.  Symbols come from the
 * generated linker script.
 */
#include <stdint.h>

#include "te_platform.h"

extern uint32_t __data_load[];
extern uint32_t __data_start[];
extern uint32_t __data_end[];
extern uint32_t __bss_start[];
extern uint32_t __bss_end[];
extern uint32_t __stack_top[];

int main(void);
void te_reset_handler(void);
void te_fault_handler(void);
void te_default_handler(void);

#define TE_SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)

void te_reset_handler(void)
{
    /* Full access to CP10/CP11 before any floating-point instruction. */
    TE_SCB_CPACR |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");

    volatile uint32_t *dst = __data_start;
    const uint32_t *src = __data_load;
    while ((uintptr_t)dst < (uintptr_t)__data_end) {
        *dst++ = *src++;
    }
    for (dst = __bss_start; (uintptr_t)dst < (uintptr_t)__bss_end;) {
        *dst++ = 0u;
    }
    te_exit(main());
}

void te_fault_handler(void)
{
    te_puts("TE_ERROR hard fault\n");
    te_exit(3);
}

void te_default_handler(void)
{
    te_puts("TE_ERROR unexpected interrupt\n");
    te_exit(4);
}

typedef void (*te_vector_t)(void);

/* The 16 system exception entries; no peripheral interrupt is used. */
__attribute__((section(".isr_vector"), used)) const te_vector_t te_vectors[16] = {
    (te_vector_t)(uintptr_t)__stack_top, /* initial SP */
    te_reset_handler,                    /* Reset */
    te_default_handler,                  /* NMI */
    te_fault_handler,                    /* HardFault */
    te_fault_handler,                    /* MemManage */
    te_fault_handler,                    /* BusFault */
    te_fault_handler,                    /* UsageFault */
    0, 0, 0, 0,                          /* reserved */
    te_default_handler,                  /* SVCall */
    te_default_handler,                  /* DebugMonitor */
    0,                                   /* reserved */
    te_default_handler,                  /* PendSV */
    te_default_handler,                  /* SysTick */
};
