/*
 * main.c - TinyEngine firmware runner.
 *
 * Reads records from input.bin (each record: every input's bytes, in
 * te_inputs order), runs te_invoke() on each and appends every output's bytes
 * to output.bin.  Without input.bin it runs once on the default input
 * (input_data.c; all zeros when that is empty).  Prints, one line each:
 *   TE_OUTPUT <i>: <values of output i of the last record>
 *   TE_INSTRUCTIONS <n>     (or TE_CYCLES; first inference; when measurable)
 *   TE_STACK_BYTES <n>      (deepest stack use during inference; when measurable)
 *   TE_LAYER <i> <n>        (models compiled with profiling: the count of layer i in the
 *                            first inference, printed as it runs -- once per patch for the
 *                            layers of a patch stage; when measurable)
 *   TE_RECORDS <n>
 *   ~~~TE DONE~~~
 * and exits 0.  Any failure prints "TE_ERROR <what>" and exits non-zero.
 * No allocation, no printf: a small formatter writes the text.
 */
#include <stdint.h>
#include <string.h>

#include "model.h"
#include "te_default_input.h"
#include "te_platform.h"
#include "te_text.h"

static void out_i64(int64_t v)
{
    if (v < 0) {
        out_char('-');
        out_u64(0u - (uint64_t)v);
    } else {
        out_u64((uint64_t)v);
    }
}

static void out_i32(int32_t v)
{
    out_i64(v);
}

/* Human-readable float with 6 decimals (exact values are in output.bin). */
static void out_f32(float v)
{
    if (v != v) {
        out_str("nan");
        return;
    }
    if (v < 0.0f) {
        out_char('-');
        v = -v;
    }
    if (v >= 4.0e9f) {
        out_str("inf");
        return;
    }
    uint32_t whole = (uint32_t)v;
    uint32_t frac = (uint32_t)((v - (float)whole) * 1000000.0f + 0.5f);
    if (frac >= 1000000u) {
        whole += 1u;
        frac -= 1000000u;
    }
    out_u32(whole);
    out_char('.');
    for (uint32_t div = 100000u; div > 0u; div /= 10u) {
        out_char((char)('0' + (frac / div) % 10u));
    }
}

static uint32_t elem_size(uint8_t dtype)
{
    switch (dtype) {
    case TE_DTYPE_INT16:
        return 2u;
    case TE_DTYPE_INT32:
    case TE_DTYPE_FLOAT32:
        return 4u;
    case TE_DTYPE_INT64:
        return 8u;
    default:
        return 1u;
    }
}

static void out_value(const te_io_t *io, uint32_t index)
{
    const uint8_t *p = (const uint8_t *)io->data + elem_size(io->dtype) * index;
    switch (io->dtype) {
    case TE_DTYPE_UINT8:
        out_u32(*p);
        break;
    case TE_DTYPE_INT16: {
        int16_t v;
        memcpy(&v, p, sizeof(v));
        out_i32(v);
        break;
    }
    case TE_DTYPE_INT32: {
        int32_t v;
        memcpy(&v, p, sizeof(v));
        out_i32(v);
        break;
    }
    case TE_DTYPE_INT64: {
        int64_t v;
        memcpy(&v, p, sizeof(v));
        out_i64(v);
        break;
    }
    case TE_DTYPE_FLOAT32: {
        float v;
        memcpy(&v, p, sizeof(v));
        out_f32(v);
        break;
    }
    default: /* TE_DTYPE_INT8: signed bytes */
        out_i32((int8_t)*p);
        break;
    }
}

/* ---- per-layer profile -------------------------------------------------- */

static int g_profiling;          /* nonzero during the first inference */
static uint32_t g_profile_last;  /* count at the previous mark */

/* Called by te_invoke() after layer `layer` when the model was compiled with profiling
 * (te_profile_mark in model.h); never referenced otherwise.  The timer is paused while the
 * line is written, so the printing is counted neither in the layers nor in the total. */
void te_profile_mark(uint32_t layer)
{
    const uint32_t now = te_timer_pause();
    if (g_profiling && te_timer_label != 0) {
        out_str("TE_LAYER ");
        out_u32(layer);
        out_char(' ');
        out_u32(now - g_profile_last);
        out_char('\n');
    }
    g_profile_last = now;
    te_timer_resume();
}

/* ---- inputs ------------------------------------------------------------- */

static uint32_t input_record_bytes(void)
{
    uint32_t total = 0;
    for (int i = 0; i < TE_NUM_INPUTS; ++i) {
        total += te_inputs[i].bytes;
    }
    return total;
}

/* Byte loops rather than memset/memcpy: a model whose kernels do not call them then links
 * neither (~470 bytes of Flash). */
static void load_default_input(void)
{
    const int zeros = (te_default_input_bytes == 0u);
    if (!zeros && te_default_input_bytes != input_record_bytes()) {
        fail("te_default_input has the wrong size", 0);
    }
    uint32_t offset = 0;
    for (int i = 0; i < TE_NUM_INPUTS; ++i) {
        uint8_t *dst = (uint8_t *)te_inputs[i].data;
        for (uint32_t k = 0; k < te_inputs[i].bytes; ++k) {
            dst[k] = zeros ? 0u : te_default_input[offset + k];
        }
        offset += te_inputs[i].bytes;
    }
}

/* Reads one record; returns 0 at a clean end of file, 1 when a record was read. */
static int read_record(int handle)
{
    for (int i = 0; i < TE_NUM_INPUTS; ++i) {
        const int32_t got = te_file_read(handle, te_inputs[i].data, te_inputs[i].bytes);
        if (i == 0 && got == 0 && te_inputs[i].bytes != 0u) {
            return 0;
        }
        if (got < 0 || (uint32_t)got != te_inputs[i].bytes) {
            fail("input.bin: short read (not a whole number of records) at input ",
                 te_inputs[i].name);
        }
    }
    return 1;
}

/* ---- the runner --------------------------------------------------------- */

int main(void)
{
    te_platform_init();

    const int in = te_file_open("input.bin", 0);
    const int out = te_file_open("output.bin", 1);
    if (out < 0) {
        fail("cannot open output.bin for writing", 0);
    }

    uint32_t records = 0;
    uint32_t first_count = 0;
    int32_t stack_max = -1;
    for (;;) {
        if (in >= 0) {
            if (!read_record(in)) {
                break;
            }
        } else {
            load_default_input();
        }

        te_stack_paint();
        g_profiling = (records == 0u);
        g_profile_last = 0u;
        te_timer_start();
        te_invoke();
        const uint32_t count = te_timer_stop();
        const int32_t stack = te_stack_used();

        if (records == 0u) {
            first_count = count;
        }
        if (stack > stack_max) {
            stack_max = stack;
        }
        for (int i = 0; i < TE_NUM_OUTPUTS; ++i) {
            if (te_file_write(out, te_outputs[i].data, te_outputs[i].bytes) != 0) {
                fail("cannot write output.bin", 0);
            }
        }
        ++records;
        if (in < 0) {
            break;
        }
    }
    if (in >= 0) {
        te_file_close(in);
    }
    te_file_close(out);
    if (records == 0u) {
        fail("input.bin is empty", 0);
    }

    for (int i = 0; i < TE_NUM_OUTPUTS; ++i) {
        const te_io_t *io = &te_outputs[i];
        const uint32_t n = io->bytes / elem_size(io->dtype);
        out_str("TE_OUTPUT ");
        out_u32((uint32_t)i);
        out_char(':');
        for (uint32_t k = 0; k < n; ++k) {
            out_char(' ');
            out_value(io, k);
        }
        out_char('\n');
    }
    if (te_timer_label != 0) {
        line_u32(te_timer_label, first_count);
    }
    if (stack_max >= 0) {
        line_u32("TE_STACK_BYTES", (uint32_t)stack_max);
        if (te_stack_size() != 0u && (uint32_t)stack_max >= te_stack_size()) {
            fail("stack overflow: inference used the whole stack; raise the stack size", 0);
        }
    }
    line_u32("TE_RECORDS", records);
    out_str("~~~TE DONE~~~\n");
    out_flush();
    return 0;
}
