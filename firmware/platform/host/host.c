/*
 * host.c - TinyEngine platform for a native (host) build: stdio files and
 * console, no timer, no stack measurement.
 */
#include <stdio.h>
#include <stdlib.h>

#include "te_platform.h"

#define TE_HOST_MAX_FILES 4

static FILE *g_files[TE_HOST_MAX_FILES];

void te_platform_init(void) {}

int te_file_open(const char *name, int for_writing)
{
    for (int h = 0; h < TE_HOST_MAX_FILES; ++h) {
        if (g_files[h] == NULL) {
            g_files[h] = fopen(name, for_writing ? "wb" : "rb");
            return g_files[h] != NULL ? h : -1;
        }
    }
    return -1;
}

int32_t te_file_read(int handle, void *buf, uint32_t bytes)
{
    FILE *f = g_files[handle];
    const size_t got = fread(buf, 1, bytes, f);
    return ferror(f) ? -1 : (int32_t)got;
}

int te_file_write(int handle, const void *buf, uint32_t bytes)
{
    return fwrite(buf, 1, bytes, g_files[handle]) == bytes ? 0 : -1;
}

void te_file_close(int handle)
{
    fclose(g_files[handle]);
    g_files[handle] = NULL;
}

void te_puts(const char *s)
{
    fputs(s, stdout);
    fflush(stdout);
}

void te_exit(int code)
{
    fflush(stdout);
    exit(code);
}

const char *const te_timer_label = 0;

void te_timer_start(void) {}

uint32_t te_timer_stop(void) { return 0u; }

uint32_t te_timer_pause(void) { return 0u; }

void te_timer_resume(void) {}

void te_stack_paint(void) {}

int32_t te_stack_used(void) { return -1; }

uint32_t te_stack_size(void) { return 0u; }
