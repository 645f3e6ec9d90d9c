/* te_conv_2d_mat_mult_s8_dsp.c - SMLAD inner product of the DSP convolutions.
 * Contract: te_conv_2d_mat_mult_s8_dsp.h. */
#include "te_conv_2d_mat_mult_s8_dsp.h"

#include "te_dsp.h"

#define TE_MM_INLINE static inline __attribute__((always_inline))

/* One output: accumulator -> int8 (mode: te_dsp.h's TE_RQ_* bits, a compile-time constant
 * in every caller so that each mode gets its own loop). */
TE_MM_INLINE int8_t te_mm_out(int32_t acc, int32_t m, int32_t e, int32_t r,
                              const te_mm_dsp_args *a, const int mode)
{
    int32_t y;
    if (mode & TE_RQ_FAST) {
        y = te_requant_fast_dsp(acc, m, r, e);
        if (mode & TE_RQ_POST_OFFSET) {
            y += a->output_offset;
        }
    } else {
        y = te_requant_dsp(acc, m, -e) + a->output_offset;
    }
    if (mode & TE_RQ_FULL_RANGE) {
        return (int8_t)te_ssat8(y);
    }
    return (int8_t)te_clamp_i32(y, a->act_min, a->act_max);
}

#if TE_DSP_NATIVE
/* One group (4 column values) of two columns times two channels: 3 LDRD, 4 SXTB16, 8 SMLAD. */
#define TE_MM_2X2_GROUP                                                                       \
    "ldrd %[w0], %[w1], [%[wp]], #8\n\t"                                                      \
    "ldrd %[x0], %[x1], [%[cp]], #8\n\t"                                                      \
    "sxtb16 %[t0], %[w0]\n\t"                                                                 \
    "sxtb16 %[w0], %[w0], ror #8\n\t"                                                         \
    "sxtb16 %[t1], %[w1]\n\t"                                                                 \
    "sxtb16 %[w1], %[w1], ror #8\n\t"                                                         \
    "smlad %[a00], %[t0], %[x0], %[a00]\n\t"                                                  \
    "smlad %[a01], %[t1], %[x0], %[a01]\n\t"                                                  \
    "smlad %[a00], %[w0], %[x1], %[a00]\n\t"                                                  \
    "smlad %[a01], %[w1], %[x1], %[a01]\n\t"                                                  \
    "ldrd %[x0], %[x1], [%[cp]], #8\n\t"                                                      \
    "smlad %[a10], %[t0], %[x0], %[a10]\n\t"                                                  \
    "smlad %[a11], %[t1], %[x0], %[a11]\n\t"                                                  \
    "smlad %[a10], %[w0], %[x1], %[a10]\n\t"                                                  \
    "smlad %[a11], %[w1], %[x1], %[a11]\n\t"
#define TE_MM_2X2_OPERANDS                                                                    \
    : [a00] "+r"(a00), [a01] "+r"(a01), [a10] "+r"(a10), [a11] "+r"(a11), [wp] "+r"(wp),      \
      [cp] "+r"(cp), [w0] "=&r"(w0), [w1] "=&r"(w1), [x0] "=&r"(x0), [x1] "=&r"(x1),          \
      [t0] "=&r"(t0), [t1] "=&r"(t1)                                                          \
    :                                                                                         \
    : "memory"
#endif

/* Two columns, every channel. */
TE_MM_INLINE void te_mm_2cols(const te_mm_dsp_args *a, const int32_t *cols, int8_t *out0,
                              int8_t *out1, const int mode)
{
    /* the output offset goes into R unless TE_RQ_POST_OFFSET */
    const int8_t *w = a->weights;
    const int32_t k4 = a->k4, out_c = a->out_c;
    const int32_t off = (mode & TE_RQ_POST_OFFSET) ? 0 : a->output_offset;
    const int32_t *acc_init = a->acc_init;
    const int32_t *mult = a->mult;
    const int8_t *rshift = a->rshift;
    int32_t oc = 0;
    for (; oc + 2 <= out_c; oc += 2) {
        int32_t a00 = acc_init[oc], a01 = acc_init[oc + 1];
        int32_t a10 = a00, a11 = a01;
#if TE_DSP_NATIVE
        const int8_t *wp = w;
        const int32_t *cp = cols;
        int32_t w0, w1, x0, x1, t0, t1;
        int32_t g = k4;
        for (; g >= 2; g -= 2) {
            __asm__ volatile(TE_MM_2X2_GROUP TE_MM_2X2_GROUP TE_MM_2X2_OPERANDS);
        }
        if (g) {
            __asm__ volatile(TE_MM_2X2_GROUP TE_MM_2X2_OPERANDS);
        }
        w = wp;
#else
        const int32_t *c = cols;
        for (int32_t g = 0; g < k4; ++g) {
            const int32_t w0 = te_read_w(w);
            const int32_t w1 = te_read_w(w + 4);
            const int32_t w0e = te_sxtb16(w0), w0o = te_sxtb16_ror8(w0);
            const int32_t w1e = te_sxtb16(w1), w1o = te_sxtb16_ror8(w1);
            w += 8;
            a00 = te_smlad(w0o, c[1], te_smlad(w0e, c[0], a00));
            a01 = te_smlad(w1o, c[1], te_smlad(w1e, c[0], a01));
            a10 = te_smlad(w0o, c[3], te_smlad(w0e, c[2], a10));
            a11 = te_smlad(w1o, c[3], te_smlad(w1e, c[2], a11));
            c += 4;
        }
#endif
        {
            const int32_t m0 = mult[oc], m1 = mult[oc + 1];
            const int32_t e0 = rshift[oc], e1 = rshift[oc + 1];
            const int32_t r0 = (mode & TE_RQ_FAST) ? te_requant_round_dsp(off, e0) : 0;
            const int32_t r1 = (mode & TE_RQ_FAST) ? te_requant_round_dsp(off, e1) : 0;
            out0[oc] = te_mm_out(a00, m0, e0, r0, a, mode);
            out1[oc] = te_mm_out(a10, m0, e0, r0, a, mode);
            out0[oc + 1] = te_mm_out(a01, m1, e1, r1, a, mode);
            out1[oc + 1] = te_mm_out(a11, m1, e1, r1, a, mode);
        }
    }
    if (oc < out_c) {
        const int32_t *c = cols;
        int32_t a0 = acc_init[oc], a1 = a0;
        for (int32_t g = 0; g < k4; ++g) {
            const int32_t w0 = te_read_w(w);
            const int32_t w0e = te_sxtb16(w0), w0o = te_sxtb16_ror8(w0);
            w += 4;
            a0 = te_smlad(w0o, c[1], te_smlad(w0e, c[0], a0));
            a1 = te_smlad(w0o, c[3], te_smlad(w0e, c[2], a1));
            c += 4;
        }
        const int32_t m = mult[oc], e = rshift[oc];
        const int32_t r = (mode & TE_RQ_FAST) ? te_requant_round_dsp(off, e) : 0;
        out0[oc] = te_mm_out(a0, m, e, r, a, mode);
        out1[oc] = te_mm_out(a1, m, e, r, a, mode);
    }
}

/* One column, every channel (the odd last pixel). */
/* One column (any mode), its groups `step` words apart (2: one column, 4: a column of a
 * two-column block). */
static void te_mm_1col(const te_mm_dsp_args *a, const int32_t *cols, int8_t *out0,
                       const int32_t step)
{
    const int8_t *w = a->weights;
    const int32_t k4 = a->k4, out_c = a->out_c, mode = a->rq_mode;
    const int32_t off = (mode & TE_RQ_POST_OFFSET) ? 0 : a->output_offset;
    for (int32_t oc = 0; oc < out_c; oc += 2) {
        const int two = oc + 2 <= out_c;
        const int32_t *c = cols;
        int32_t a0 = a->acc_init[oc], a1 = two ? a->acc_init[oc + 1] : 0;
        for (int32_t g = 0; g < k4; ++g) {
            const int32_t x0 = c[0], x1 = c[1];
            const int32_t w0 = te_read_w(w);
            a0 = te_smlad(te_sxtb16_ror8(w0), x1, te_smlad(te_sxtb16(w0), x0, a0));
            if (two) {
                const int32_t w1 = te_read_w(w + 4);
                a1 = te_smlad(te_sxtb16_ror8(w1), x1, te_smlad(te_sxtb16(w1), x0, a1));
            }
            w += two ? 8 : 4;
            c += step;
        }
        for (int32_t j = 0; j < 1 + two; ++j) {
            const int32_t acc = j ? a1 : a0;
            const int32_t m = a->mult[oc + j], e = a->rshift[oc + j];
            const int32_t r = (mode & TE_RQ_FAST) ? te_requant_round_dsp(off, e) : 0;
            out0[oc + j] = (mode & TE_RQ_POST_OFFSET)
                               ? te_mm_out(acc, m, e, r, a, TE_RQ_FAST | TE_RQ_POST_OFFSET)
                           : (mode & TE_RQ_FAST) ? te_mm_out(acc, m, e, r, a, TE_RQ_FAST)
                                                 : te_mm_out(acc, m, e, r, a, 0);
        }
    }
}

void te_conv_2d_mat_mult_s8_dsp(const te_mm_dsp_args *a, const int32_t *cols, int32_t n_cols,
                                int8_t *out0, int8_t *out1)
{
    /* Two specializations of the two-column loop (each ~700 bytes of code): the common
     * full-range layers, and every other fast one (a narrower clamp, e.g. RELU6, or a
     * post-shift offset: the offset added after the shift is exact in either case).  Layers
     * without TE_RQ_FAST (rare: multipliers above 1 or huge accumulators) go column by
     * column. */
    if (n_cols != 2) {
        te_mm_1col(a, cols, out0, 2);
    } else if (a->rq_mode == (TE_RQ_FAST | TE_RQ_FULL_RANGE)) {
        te_mm_2cols(a, cols, out0, out1, TE_RQ_FAST | TE_RQ_FULL_RANGE);
    } else if (a->rq_mode & TE_RQ_FAST) {
        te_mm_2cols(a, cols, out0, out1, TE_RQ_FAST | TE_RQ_POST_OFFSET);
    } else {
        te_mm_1col(a, cols, out0, 4);
        te_mm_1col(a, cols + 2, out1, 4);
    }
}
