/* te_fully_connected_s8_dsp.c - int8 fully connected, SMLAD, four rows at a time.
 * Contract: te_fully_connected_s8_dsp.h. */
#include "te_fully_connected_s8_dsp.h"

#include "te_dsp.h"

/* The last in_features % 4 input values as one word, zero-padded (their weights are 0). */
static inline int32_t te_fc_tail_word(const int8_t *x, int32_t rest)
{
    uint32_t v = 0;
    for (int32_t i = 0; i < rest; ++i) {
        v |= (uint32_t)(uint8_t)x[i] << (8 * i);
    }
    return (int32_t)v;
}

/* acc += the 4 weights of word w times the 4 inputs (xe, xo = te_sxtb16 / _ror8 of them). */
static inline int32_t te_fc_dot4(int32_t acc, int32_t w, int32_t xe, int32_t xo)
{
    return te_smlad(te_sxtb16_ror8(w), xo, te_smlad(te_sxtb16(w), xe, acc));
}

static inline int8_t te_fc_out(int32_t acc, int32_t m, int32_t e, int32_t rq_mode,
                               int32_t output_offset, int32_t act_min, int32_t act_max)
{
    int32_t y;
    if (rq_mode & TE_RQ_POST_OFFSET) {
        y = te_requant_fast_dsp(acc, m, te_requant_round_dsp(0, e), e) + output_offset;
    } else if (rq_mode & TE_RQ_FAST) {
        y = te_requant_fast_dsp(acc, m, te_requant_round_dsp(output_offset, e), e);
    } else {
        y = te_requant_dsp(acc, m, -e) + output_offset;
    }
    return (int8_t)te_clamp_i32(y, act_min, act_max);
}

#if TE_DSP_NATIVE
/* One group of 4 inputs times 4 rows: LDR, 2 LDRD, 10 SXTB16, 8 SMLAD. */
#define TE_FC_GROUP \
    "ldr %[xe], [%[xp]], #4\n\t" \
    "ldrd %[w0], %[w1], [%[wp]], #8\n\t" \
    "sxtb16 %[xo], %[xe], ror #8\n\t" \
    "sxtb16 %[xe], %[xe]\n\t" \
    "sxtb16 %[t], %[w0]\n\t" \
    "sxtb16 %[w0], %[w0], ror #8\n\t" \
    "smlad %[a0], %[t], %[xe], %[a0]\n\t" \
    "smlad %[a0], %[w0], %[xo], %[a0]\n\t" \
    "sxtb16 %[t], %[w1]\n\t" \
    "sxtb16 %[w1], %[w1], ror #8\n\t" \
    "smlad %[a1], %[t], %[xe], %[a1]\n\t" \
    "smlad %[a1], %[w1], %[xo], %[a1]\n\t" \
    "ldrd %[w0], %[w1], [%[wp]], #8\n\t" \
    "sxtb16 %[t], %[w0]\n\t" \
    "sxtb16 %[w0], %[w0], ror #8\n\t" \
    "smlad %[a2], %[t], %[xe], %[a2]\n\t" \
    "smlad %[a2], %[w0], %[xo], %[a2]\n\t" \
    "sxtb16 %[t], %[w1]\n\t" \
    "sxtb16 %[w1], %[w1], ror #8\n\t" \
    "smlad %[a3], %[t], %[xe], %[a3]\n\t" \
    "smlad %[a3], %[w1], %[xo], %[a3]\n\t" \

#define TE_FC_OPERANDS \
    : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), \
    [xp] "+r"(xp), [wp] "+r"(wp), [xe] "=&r"(xe), [xo] "=&r"(xo), \
    [w0] "=&r"(w0), [w1] "=&r"(w1), [t] "=&r"(t) \
    : \
    : "memory" \

#endif

void te_fully_connected_s8_dsp(const int8_t *input, const int8_t *weights,
                               const int32_t *acc_init, int8_t *output, int32_t batches,
                               int32_t in_features, int32_t out_features,
                               const int32_t *mult, const int8_t *rshift, int32_t per_channel,
                               int32_t rq_mode, int32_t output_offset, int32_t act_min,
                               int32_t act_max)
{
    const int32_t full = in_features >> 2;
    const int32_t rest = in_features & 3;
    const int32_t k4 = full + (rest != 0);
    for (int32_t b = 0; b < batches; ++b) {
        const int8_t *x = input + (size_t)b * in_features;
        int8_t *out = output + (size_t)b * out_features;
        const int8_t *w = weights;
        int32_t o = 0;
        for (; o + 4 <= out_features; o += 4) {
            int32_t a0 = acc_init[o], a1 = acc_init[o + 1];
            int32_t a2 = acc_init[o + 2], a3 = acc_init[o + 3];
            const int8_t *xp = x;
            int32_t g = 0;
#if TE_DSP_NATIVE
            {
                const int8_t *wp = w;
                int32_t xe, xo, w0, w1, t;
                int32_t n = full;
                for (; n >= 2; n -= 2) {
                    __asm__ volatile(TE_FC_GROUP TE_FC_GROUP TE_FC_OPERANDS);
                }
                if (n) {
                    __asm__ volatile(TE_FC_GROUP TE_FC_OPERANDS);
                }
                w = wp;
                g = full;
            }
#endif
            /* the groups left to C: every one on the host, the zero-padded tail word here */
            for (; g < k4; ++g) {
                const int32_t v = g < full ? te_read_s8x4_ia(&xp) : te_fc_tail_word(xp, rest);
                const int32_t xe = te_sxtb16(v), xo = te_sxtb16_ror8(v);
                a0 = te_fc_dot4(a0, te_read_w(w), xe, xo);
                a1 = te_fc_dot4(a1, te_read_w(w + 4), xe, xo);
                a2 = te_fc_dot4(a2, te_read_w(w + 8), xe, xo);
                a3 = te_fc_dot4(a3, te_read_w(w + 12), xe, xo);
                w += 16;
            }
            const int32_t acc[4] = {a0, a1, a2, a3};
            for (int32_t j = 0; j < 4; ++j) {
                const int32_t c = per_channel ? o + j : 0;
                out[o + j] = te_fc_out(acc[j], mult[c], rshift[c], rq_mode, output_offset,
                                       act_min, act_max);
            }
        }
        for (; o < out_features; ++o) {
            const int8_t *xp = x;
            int32_t acc = acc_init[o];
            for (int32_t g = 0; g < k4; ++g) {
                const int32_t v = g < full ? te_read_s8x4_ia(&xp) : te_fc_tail_word(xp, rest);
                acc = te_fc_dot4(acc, te_read_w(w), te_sxtb16(v), te_sxtb16_ror8(v));
                w += 4;
            }
            const int32_t c = per_channel ? o : 0;
            out[o] = te_fc_out(acc, mult[c], rshift[c], rq_mode, output_offset, act_min,
                               act_max);
        }
    }
}
