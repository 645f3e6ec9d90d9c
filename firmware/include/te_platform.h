/*
 * te_platform.h - what the firmware runner needs from a platform.
 *
 * One implementation per platform, chosen by the files the Makefile compiles
 * (no #ifdefs): platform/host (stdio), platform/cortexm (semihosting, the
 * CMSDK timer under QEMU or the DWT cycle counter on a real board).
 */
#ifndef TE_PLATFORM_H
#define TE_PLATFORM_H

#include <stdint.h>

/* Called once, first thing in main(). */
void te_platform_init(void);

/* Files on the host (semihosting under QEMU / a debugger, stdio natively).
 * te_file_open returns a handle >= 0, or -1 when the file cannot be opened.
 * te_file_read returns the number of bytes read (fewer at end of file),
 * or -1 on error; te_file_write returns 0 on success, -1 on error. */
int te_file_open(const char *name, int for_writing);
int32_t te_file_read(int handle, void *buf, uint32_t bytes);
int te_file_write(int handle, const void *buf, uint32_t bytes);
void te_file_close(int handle);

/* Text to the console, no newline added. */
void te_puts(const char *s);

/* Ends the program with an exit code (never returns). */
void te_exit(int code);

/* Measurement of te_invoke(): te_timer_label is the name of the unit printed
 * ("TE_INSTRUCTIONS", "TE_CYCLES"), or 0 when the platform cannot measure. */
extern const char *const te_timer_label;
void te_timer_start(void);
uint32_t te_timer_stop(void);

/* Per-layer profiling: te_timer_pause() stops the count and returns the count since
 * te_timer_start() so far (same unit); te_timer_resume() continues it.  What runs between
 * the two is not counted, by te_timer_stop() either.  Platforms that cannot measure return 0. */
uint32_t te_timer_pause(void);
void te_timer_resume(void);

/* Stack high-water mark: te_stack_paint() fills the unused stack below the
 * caller with a pattern; te_stack_used() returns the deepest stack use (bytes
 * from the top of the stack) since the last paint, or -1 when unsupported.
 * te_stack_size() is the stack reserved by the linker script (0 if unknown). */
void te_stack_paint(void);
int32_t te_stack_used(void);
uint32_t te_stack_size(void);

#endif /* TE_PLATFORM_H */
