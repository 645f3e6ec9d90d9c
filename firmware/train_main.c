/*
 * train_main.c - TinyTrain's training firmware runner (the contract: tinytrain/firmware.py).
 *
 * Streams records from train.bin and test.bin (each: the model input's int8 bytes, then one
 * uint8 label; semihosting under QEMU or a debugger, stdio natively), as a sensor would
 * deliver them: test accuracy before training, then TT_EPOCHS epochs of one te_train_step
 * per training record, each followed by the test accuracy.  Prints, one line each:
 *   TT_PROGRESS <done> <total>   (after each training step and each test prediction: the
 *                                 epochs' steps and the evaluations' predictions)
 *   TT_EPOCH <e> <mean train loss x 1e6, 0 for e = 0> <test correct> <test total>
 *   TT_STEP_INSTRUCTIONS <n>     (the first training step; TT_STEP_CYCLES on a board)
 *   TT_PREDICT_INSTRUCTIONS <n>  (the first prediction)
 *   TT_LAYER <i> <n>             (compiled with -DTT_PROFILE: the first step's count of
 *                                 each operator i of te_train_step)
 *   TE_STACK_BYTES <n>           (deepest stack use of a step or a prediction)
 *   ~~~TE DONE~~~
 * writes params.bin (tt_params: every trained parameter, then the momentum buffers) and
 * exits 0.  Any failure prints "TE_ERROR <what>" and exits non-zero.  No allocation: a
 * record is read straight into the arena's input (tt_input).
 */
#include <stdint.h>

#include "model.h"
#include "te_platform.h"
#include "te_text.h"

#ifndef TT_EPOCHS
#define TT_EPOCHS 1
#endif

/* Reads one record into the arena's input and *label; 0 at a clean end of file. */
static int read_record(int handle, const char *file, uint8_t *label)
{
    const int32_t got = te_file_read(handle, tt_input(), TT_INPUT_BYTES);
    if (got == 0) {
        return 0;
    }
    if (got != (int32_t)TT_INPUT_BYTES || te_file_read(handle, label, 1u) != 1) {
        fail(file, 0);
    }
    if (*label >= TT_CLASSES) {
        fail("a label is not below the number of classes", 0);
    }
    return 1;
}

static int open_data(const char *name, const char *error)
{
    const int h = te_file_open(name, 0);
    if (h < 0) {
        fail(error, 0);
    }
    return h;
}

static int32_t g_stack_max = -1;
static uint32_t g_done, g_total;

static void progress(void)
{
    ++g_done;
    out_str("TT_PROGRESS ");
    out_u32(g_done);
    out_char(' ');
    out_u32(g_total);
    out_char('\n');
    out_flush();
}
#ifdef TT_PROFILE
static int g_profiling;          /* nonzero during the first training step */
static uint32_t g_profile_last;  /* count at the previous mark */

/* Called by te_train_step after operator `index` in a project compiled with profile=True:
 * prints "TT_LAYER <index> <count since the previous mark>" during the first step.  The
 * timer is paused meanwhile, so the printing is counted neither in the operators nor in
 * the step's total. */
void te_profile_mark(uint32_t index)
{
    const uint32_t now = te_timer_pause();
    if (g_profiling && te_timer_label != 0) {
        out_str("TT_LAYER ");
        out_u32(index);
        out_char(' ');
        out_u32(now - g_profile_last);
        out_char('\n');
    }
    g_profile_last = now;
    te_timer_resume();
}
#define TT_PROFILE_STEP(on) (g_profiling = (on), g_profile_last = 0u)
#else
#define TT_PROFILE_STEP(on) ((void)0)
#endif

static uint32_t g_predict_count;
static int g_predict_measured;

static void note_stack(void)
{
    const int32_t used = te_stack_used();
    if (used > g_stack_max) {
        g_stack_max = used;
    }
}

/* Test accuracy: the number of test records predicted right; *total their number. */
static uint32_t evaluate(uint32_t *total)
{
    const int h = open_data("test.bin", "cannot open test.bin");
    uint32_t correct = 0u, n = 0u;
    uint8_t label;
    while (read_record(h, "test.bin: short read (not a whole number of records)", &label)) {
        te_stack_paint();
        te_timer_start();
        const uint8_t cls = te_predict(tt_input());
        const uint32_t count = te_timer_stop();
        note_stack();
        if (!g_predict_measured) {
            g_predict_count = count;
            g_predict_measured = 1;
        }
        correct += (cls == label) ? 1u : 0u;
        ++n;
        progress();
    }
    te_file_close(h);
    *total = n;
    return correct;
}

static void epoch_line(uint32_t epoch, uint32_t loss_micro)
{
    uint32_t total;
    const uint32_t correct = evaluate(&total);
    out_str("TT_EPOCH ");
    out_u32(epoch);
    out_char(' ');
    out_u32(loss_micro);
    out_char(' ');
    out_u32(correct);
    out_char(' ');
    out_u32(total);
    out_char('\n');
    out_flush();
}

int main(void)
{
    te_platform_init();

    /* the step count (for the learning-rate schedule): records in train.bin x epochs */
    uint32_t records = 0u;
    uint8_t label;
    int h = open_data("train.bin", "cannot open train.bin");
    while (read_record(h, "train.bin: short read (not a whole number of records)", &label)) {
        ++records;
    }
    te_file_close(h);
    if (records == 0u) {
        fail("train.bin holds no record", 0);
    }
    uint32_t tests = 0u;
    h = open_data("test.bin", "cannot open test.bin");
    while (read_record(h, "test.bin: short read (not a whole number of records)", &label)) {
        ++tests;
    }
    te_file_close(h);
    tt_train_begin(records * (uint32_t)TT_EPOCHS);
    g_total = records * (uint32_t)TT_EPOCHS + tests * ((uint32_t)TT_EPOCHS + 1u);

    epoch_line(0u, 0u);
    uint32_t step_count = 0u;
    for (uint32_t e = 1u; e <= (uint32_t)TT_EPOCHS; ++e) {
        float loss_sum = 0.0f;
        h = open_data("train.bin", "cannot open train.bin");
        for (uint32_t r = 0u; r < records; ++r) {
            if (!read_record(h, "train.bin: short read", &label)) {
                fail("train.bin changed while training", 0);
            }
            te_stack_paint();
            TT_PROFILE_STEP(e == 1u && r == 0u);
            te_timer_start();
            const float loss = te_train_step(tt_input(), label);
            const uint32_t count = te_timer_stop();
            TT_PROFILE_STEP(0);
            if (tt_fault != 0) {
                fail(tt_fault, 0);
            }
            note_stack();
            if (e == 1u && r == 0u) {
                step_count = count;
            }
            if (!(loss == loss)) {
                fail("the loss is not a number", 0);
            }
            loss_sum += loss;
            progress();
        }
        te_file_close(h);
        const float mean = loss_sum / (float)records;
        epoch_line(e, mean >= 4000.0f ? 4000000000u : (uint32_t)(mean * 1000000.0f + 0.5f));
    }

    const int out = te_file_open("params.bin", 1);
    if (out < 0) {
        fail("cannot open params.bin for writing", 0);
    }
    for (uint32_t i = 0u; i < TT_NUM_STATES; ++i) {
        if (te_file_write(out, tt_states[i].data, tt_states[i].bytes) != 0) {
            fail("cannot write params.bin", 0);
        }
    }
    te_file_close(out);

    if (te_timer_label != 0) {
        /* TE_INSTRUCTIONS -> TT_STEP_INSTRUCTIONS, TE_CYCLES -> TT_STEP_CYCLES */
        out_str("TT_STEP_");
        out_str(te_timer_label + 3);
        out_char(' ');
        out_u32(step_count);
        out_char('\n');
        out_str("TT_PREDICT_");
        out_str(te_timer_label + 3);
        out_char(' ');
        out_u32(g_predict_count);
        out_char('\n');
    }
    if (g_stack_max >= 0) {
        line_u32("TE_STACK_BYTES", (uint32_t)g_stack_max);
        if (te_stack_size() != 0u && (uint32_t)g_stack_max >= te_stack_size()) {
            fail("stack overflow: training used the whole stack; raise the stack size", 0);
        }
    }
    out_str("~~~TE DONE~~~\n");
    out_flush();
    return 0;
}
