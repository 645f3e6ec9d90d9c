/* te_conv_2d_mat_mult_s8_dsp.c - SMLAD inner product of the DSP convolutions.
 * Contract: te_conv_2d_mat_mult_s8_dsp.h. */
#include "te_conv_2d_mat_mult_s8_dsp.h"

#include "te_dsp.h"

static inline int8_t te_mm_out(int32_t acc, const int32_t *rq, int32_t output_offset,
                               int32_t act_min, int32_t act_max)
{
    int32_t y = te_requant_table_dsp(acc, rq) + output_offset;
    y = y < act_min ? act_min : y;
    return (int8_t)(y > act_max ? act_max : y);
}

#if TE_DSP_NATIVE
/* One fast-path (sh >= 0) channel of te_requant_table_dsp on accumulator x, at table entry
 * [rq] (offset OFF bytes): the result, not yet offset or clamped, replaces x. */
#define TE_MM_RQ(x, OFF)                                                                      \
    "ldrd %[lo], %[hi], [%[rq], #" #OFF "+8]\n\t"                                            \
    "smlal %[lo], %[hi], %[" #x "], %[m]\n\t"                                                \
    "asr %[t], %[" #x "], #31\n\t"                                                           \
    "adds %[lo], %[lo], %[t], lsl #31\n\t"                                                   \
    "adc %[hi], %[hi], %[t]\n\t"                                                             \
    "asr %[" #x "], %[hi], %[sh]\n\t"

/*
 * Requantize the 2x2 block (a00, a01: pixel 0, channels oc and oc+1; a10, a11: pixel 1) whose
 * two table entries start at rq (both with sh >= 0), add the offset, clamp and store the byte
 * pairs at o0 and o1.  clamp = {offset, act_min, act_max}, each repeated in both halfwords:
 * after SSAT to 10 bits (beyond any clamp range, so exact) the pairs are offset with QADD16 and
 * clamped with SSUB16/SEL.
 */
static inline void te_mm_out_2x2_fast(int32_t a00, int32_t a01, int32_t a10, int32_t a11,
                                      const int32_t *rq, const int32_t *clamp, int8_t *o0,
                                      int8_t *o1)
{
    int32_t lo, hi, t, m, sh;
    __asm__ volatile("ldrd %[m], %[sh], [%[rq]]\n\t"
            TE_MM_RQ(a00, 0)
            TE_MM_RQ(a10, 0)
            "ldrd %[m], %[sh], [%[rq], #16]\n\t"
            TE_MM_RQ(a01, 16)
            TE_MM_RQ(a11, 16)
            "ssat %[a00], #10, %[a00]\n\t"
            "ssat %[a01], #10, %[a01]\n\t"
            "ssat %[a10], #10, %[a10]\n\t"
            "ssat %[a11], #10, %[a11]\n\t"
            "pkhbt %[a00], %[a00], %[a01], lsl #16\n\t"
            "pkhbt %[a10], %[a10], %[a11], lsl #16\n\t"
            "ldrd %[lo], %[hi], [%[cl]]\n\t"
            "qadd16 %[a00], %[a00], %[lo]\n\t"
            "qadd16 %[a10], %[a10], %[lo]\n\t"
            "ssub16 %[t], %[a00], %[hi]\n\t"
            "sel %[a00], %[a00], %[hi]\n\t"
            "ssub16 %[t], %[a10], %[hi]\n\t"
            "sel %[a10], %[a10], %[hi]\n\t"
            "ldr %[lo], [%[cl], #8]\n\t"
            "ssub16 %[t], %[a00], %[lo]\n\t"
            "sel %[a00], %[lo], %[a00]\n\t"
            "ssub16 %[t], %[a10], %[lo]\n\t"
            "sel %[a10], %[lo], %[a10]\n\t"
            "uxtb16 %[a00], %[a00]\n\t"
            "uxtb16 %[a10], %[a10]\n\t"
            "orr %[a00], %[a00], %[a00], lsr #8\n\t"
            "orr %[a10], %[a10], %[a10], lsr #8\n\t"
            "strh %[a00], [%[o0]]\n\t"
            "strh %[a10], [%[o1]]\n\t"
            : [a00] "+&r"(a00), [a01] "+&r"(a01), [a10] "+&r"(a10), [a11] "+&r"(a11),
              [lo] "=&r"(lo), [hi] "=&r"(hi), [t] "=&r"(t), [m] "=&r"(m), [sh] "=&r"(sh)
            : [rq] "r"(rq), [cl] "r"(clamp), [o0] "r"(o0), [o1] "r"(o1)
            : "cc", "memory");
}

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

void te_conv_2d_mat_mult_s8_dsp(const int8_t *weights, const int32_t *cols, int32_t n_cols,
                                int32_t k4, int32_t out_c, const int32_t *acc_init,
                                const int32_t *requant, int32_t output_offset, int32_t act_min,
                                int32_t act_max, int8_t *out0, int8_t *out1)
{
    const int8_t *w = weights;
    int32_t oc = 0;
#if TE_DSP_NATIVE
    const int32_t clamp[3] = {(int32_t)((uint32_t)(uint16_t)output_offset * 0x10001u),
                              (int32_t)((uint32_t)(uint16_t)act_min * 0x10001u),
                              (int32_t)((uint32_t)(uint16_t)act_max * 0x10001u)};
#endif
    if (n_cols == 2) {
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
                const int32_t *rq0 = requant + 4 * oc;
                const int32_t *rq1 = rq0 + 4;
#if TE_DSP_NATIVE
                if ((rq0[1] | rq1[1]) >= 0) {
                    te_mm_out_2x2_fast(a00, a01, a10, a11, rq0, clamp, out0 + oc, out1 + oc);
                    continue;
                }
#endif
                out0[oc] = te_mm_out(a00, rq0, output_offset, act_min, act_max);
                out1[oc] = te_mm_out(a10, rq0, output_offset, act_min, act_max);
                out0[oc + 1] = te_mm_out(a01, rq1, output_offset, act_min, act_max);
                out1[oc + 1] = te_mm_out(a11, rq1, output_offset, act_min, act_max);
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
            out0[oc] = te_mm_out(a0, requant + 4 * oc, output_offset, act_min, act_max);
            out1[oc] = te_mm_out(a1, requant + 4 * oc, output_offset, act_min, act_max);
        }
        return;
    }
    for (; oc + 2 <= out_c; oc += 2) {
        const int32_t *c = cols;
        int32_t a0 = acc_init[oc], a1 = acc_init[oc + 1];
        for (int32_t g = 0; g < k4; ++g) {
            const int32_t w0 = te_read_w(w);
            const int32_t w1 = te_read_w(w + 4);
            const int32_t x0 = c[0], x1 = c[1];
            w += 8;
            c += 2;
            a0 = te_smlad(te_sxtb16_ror8(w0), x1, te_smlad(te_sxtb16(w0), x0, a0));
            a1 = te_smlad(te_sxtb16_ror8(w1), x1, te_smlad(te_sxtb16(w1), x0, a1));
        }
        out0[oc] = te_mm_out(a0, requant + 4 * oc, output_offset, act_min, act_max);
        out0[oc + 1] = te_mm_out(a1, requant + 4 * oc + 4, output_offset, act_min, act_max);
    }
    if (oc < out_c) {
        const int32_t *c = cols;
        int32_t a0 = acc_init[oc];
        for (int32_t g = 0; g < k4; ++g) {
            const int32_t w0 = te_read_w(w);
            w += 4;
            a0 = te_smlad(te_sxtb16_ror8(w0), c[1], te_smlad(te_sxtb16(w0), c[0], a0));
            c += 2;
        }
        out0[oc] = te_mm_out(a0, requant + 4 * oc, output_offset, act_min, act_max);
    }
}
