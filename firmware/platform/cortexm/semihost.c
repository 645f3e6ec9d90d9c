/*
 * semihost.c - files, console and exit through Arm semihosting (bkpt 0xAB).
 *
 * Served by QEMU (-semihosting-config enable=on,target=native) or by a
 * debugger (openocd: "arm semihosting enable").  Paths are relative to the
 * host program's working directory.
 */
#include <stdint.h>

#include "te_platform.h"

enum {
    TE_SYS_OPEN = 0x01,
    TE_SYS_CLOSE = 0x02,
    TE_SYS_WRITE0 = 0x04,
    TE_SYS_WRITE = 0x05,
    TE_SYS_READ = 0x06,
    TE_SYS_EXIT_EXTENDED = 0x20
};

#define TE_SH_MODE_RB 1u
#define TE_SH_MODE_WB 5u
#define TE_ADP_STOPPED_APPLICATION_EXIT 0x20026u

static int32_t sh_call(uint32_t op, const void *arg)
{
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return (int32_t)r0;
}

int te_file_open(const char *name, int for_writing)
{
    /* Counted here: libc's strlen would add ~200 bytes of Flash (the empty asm keeps
       GCC from turning the loop back into a strlen call). */
    uint32_t len = 0u;
    while (name[len] != '\0') {
        ++len;
        __asm__("" : "+r"(len));
    }
    const uint32_t args[3] = {(uint32_t)(uintptr_t)name,
                              for_writing ? TE_SH_MODE_WB : TE_SH_MODE_RB, len};
    const int32_t handle = sh_call(TE_SYS_OPEN, args);
    return handle < 0 ? -1 : (int)handle;
}

int32_t te_file_read(int handle, void *buf, uint32_t bytes)
{
    const uint32_t args[3] = {(uint32_t)handle, (uint32_t)(uintptr_t)buf, bytes};
    const int32_t not_read = sh_call(TE_SYS_READ, args);
    if (not_read < 0 || (uint32_t)not_read > bytes) {
        return -1;
    }
    return (int32_t)(bytes - (uint32_t)not_read);
}

int te_file_write(int handle, const void *buf, uint32_t bytes)
{
    const uint32_t args[3] = {(uint32_t)handle, (uint32_t)(uintptr_t)buf, bytes};
    return sh_call(TE_SYS_WRITE, args) == 0 ? 0 : -1;
}

void te_file_close(int handle)
{
    const uint32_t args[1] = {(uint32_t)handle};
    (void)sh_call(TE_SYS_CLOSE, args);
}

void te_puts(const char *s)
{
    (void)sh_call(TE_SYS_WRITE0, s);
}

void te_exit(int code)
{
    const uint32_t args[2] = {TE_ADP_STOPPED_APPLICATION_EXIT, (uint32_t)code};
    for (;;) {
        (void)sh_call(TE_SYS_EXIT_EXTENDED, args);
    }
}

void te_platform_init(void) {}
