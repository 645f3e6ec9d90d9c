/* te_add_s8_dsp.c - int8 ADD, same-shape operands, DSP extension.  Contract and the proof of
 * the fast path in te_add_s8_dsp.h. */
#include "te_add_s8_dsp.h"

/* One output element of the fast path (te_add_s8_dsp.h), plain C.  a_off20: a_offset 2^20,
 * or 0 where a_offset 2^(19 + eb) is already in rb; post: out_offset added after the shift
 * (zo), else it is in ro; full: act range [-128, 127]. */
static inline int8_t te_add_dsp_one(int32_t a, int32_t b, int32_t a_off20, int32_t b_off21,
                                    int32_t mb, int32_t rb, int32_t eb, int32_t mo, int32_t ro,
                                    int32_t eo, int32_t zo, int32_t lo, int32_t hi, int post,
                                    int full)
{
    const int32_t sb = te_add_dsp_stage_b(b, b_off21, mb, rb, eb);
    const uint32_t s_part = (uint32_t)sb + ((uint32_t)a << 19);          /* S - a_off20 / 2 */
    const int32_t X = (int32_t)((uint32_t)a_off20 + (s_part << 1));      /* 2 S */
    int32_t v = te_add_dsp_stage_out(X, mo, ro, eo);
    if (post) {
        v += zo;
    }
    if (full) {
        return (int8_t)te_ssat8(v);
    }
    return (int8_t)te_clamp_i32(v, lo, hi);
}

/* The fast path in plain C (the host build, the last size % 4 elements, and the cases the
 * assembly loops do not cover). */
static void te_add_dsp_loop(const int8_t *pa, const int8_t *pb, int8_t *po, int32_t size,
                            int32_t a_off20, int32_t b_off21, int32_t mb, int32_t rb, int32_t eb,
                            int32_t mo, int32_t ro, int32_t eo, int32_t zo, int32_t lo,
                            int32_t hi, int post, int full)
{
    for (int32_t i = 0; i < size; i++) {
        po[i] = te_add_dsp_one(pa[i], pb[i], a_off20, b_off21, mb, rb, eb, mo, ro, eo, zo, lo,
                               hi, post, full);
    }
}

#if TE_DSP_NATIVE
/*
 * The hot loops of the fast path on the core: `blocks` groups of 4 elements, a_offset folded
 * into rb, out_offset into ro, act range [-128, 127].  13 instructions per element (the C twin
 * te_add_dsp_one above, written so that 13 registers suffice and nothing is spilled).
 * b_round = 1:                              b_round = 0 (shift of b = 0):
 *   ldrsb  t, [pb], #1                        same without the sub and asr marked *
 *   add    t, b_off21, t, lsl #21           A = (b + b_offset) 2^21
 *   smmlar v, t, mb, rb
 *   sub    v, v, t, lsr #31                 * - [A < 0]
 *   asr    v, v, eb                         * sb + a_offset 2^19
 *   ldrsb  t, [pa], #1
 *   add    v, v, t, lsl #19                 S
 *   lsl    t, v, #1                         X = 2 S
 *   smmlar v, t, mo, ro
 *   sub    v, v, t, lsr #31
 *   asr    v, v, eo
 *   ssat   v, #8, v
 *   strb   v, [po], #1
 */
#define TE_ADD_DSP_B_HEAD                                                                     \
    "ldrsb  %[t], [%[pb]], #1\n\t"                                                            \
    "add    %[t], %[boff], %[t], lsl #21\n\t"                                                 \
    "smmlar %[v], %[t], %[mb], %[rb]\n\t"
#define TE_ADD_DSP_B_ROUND                                                                    \
    "sub    %[v], %[v], %[t], lsr #31\n\t"                                                    \
    "asr    %[v], %[v], %[eb]\n\t"
#define TE_ADD_DSP_TAIL                                                                       \
    "ldrsb  %[t], [%[pa]], #1\n\t"                                                            \
    "add    %[v], %[v], %[t], lsl #19\n\t"                                                    \
    "lsl    %[t], %[v], #1\n\t"                                                               \
    "smmlar %[v], %[t], %[mo], %[ro]\n\t"                                                     \
    "sub    %[v], %[v], %[t], lsr #31\n\t"                                                    \
    "asr    %[v], %[v], %[eo]\n\t"                                                            \
    "ssat   %[v], #8, %[v]\n\t"                                                               \
    "strb   %[v], [%[po]], #1\n\t"
#define TE_ADD_DSP_ASM_LOOP(ELEM)                                                             \
    __asm__ volatile("1:\n\t" ELEM ELEM ELEM ELEM                                             \
                     "subs   %[n], %[n], #1\n\t"                                              \
                     "bne    1b\n\t"                                                          \
                     : [pa] "+r"(pa), [pb] "+r"(pb), [po] "+r"(po), [n] "+r"(blocks),         \
                       [t] "=&r"(t), [v] "=&r"(v)                                             \
                     : [boff] "r"(b_off21), [mb] "r"(mb), [rb] "r"(rb), [eb] "r"(eb),         \
                       [mo] "r"(mo), [ro] "r"(ro), [eo] "r"(eo)                               \
                     : "cc", "memory")

/* noinline: inlined into te_add_s8_dsp, GCC (Cortex-M4) cannot find the 13 registers. */
__attribute__((noinline)) static void te_add_dsp_blocks(const int8_t *pa, const int8_t *pb,
                                                        int8_t *po, int32_t blocks,
                                                        int32_t b_off21, int32_t mb, int32_t rb,
                                                        int32_t eb, int32_t mo, int32_t ro,
                                                        int32_t eo)
{
    int32_t t, v;
    if (blocks <= 0) {
        return;
    }
    if (eb > 0) {
        TE_ADD_DSP_ASM_LOOP(TE_ADD_DSP_B_HEAD TE_ADD_DSP_B_ROUND TE_ADD_DSP_TAIL);
    } else {
        TE_ADD_DSP_ASM_LOOP(TE_ADD_DSP_B_HEAD TE_ADD_DSP_TAIL);
    }
    (void)t;
    (void)v;
}

/* Clamp n int8 values in place to [lo, hi] (both in [-128, 127]), 4 at a time: SSUB8 sets a
 * lane's GE flag where the signed byte difference is >= 0, SEL picks by it (max, then min).
 * Run over out[0, n) once the loop has read every input byte it needs below n, it rewrites
 * only bytes of out already written, so the overlap contract still holds. */
static void te_add_dsp_clamp(int8_t *p, int32_t n, int32_t lo, int32_t hi)
{
    const int32_t lo4 = (int32_t)(0x01010101u * (uint8_t)lo);
    const int32_t hi4 = (int32_t)(0x01010101u * (uint8_t)hi);
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        int32_t w = te_read_w(p + i), t;
        __asm__("ssub8 %[t], %[w], %[lo]\n\t"
                "sel   %[w], %[w], %[lo]\n\t"
                "ssub8 %[t], %[hi], %[w]\n\t"
                "sel   %[w], %[w], %[hi]"
                : [w] "+&r"(w), [t] "=&r"(t)
                : [lo] "r"(lo4), [hi] "r"(hi4)
                : "cc");
        te_write_w(p + i, w);
    }
    for (; i < n; i++) {
        p[i] = (int8_t)te_clamp_i32(p[i], lo, hi);
    }
}
#endif

void te_add_s8_dsp(const int8_t *in1, const int8_t *in2, int8_t *out, int32_t size,
                   int32_t in1_offset, int32_t in1_mult, int32_t in1_shift,
                   int32_t in2_offset, int32_t in2_mult, int32_t in2_shift, int32_t left_shift,
                   int32_t out_offset, int32_t out_mult, int32_t out_shift,
                   int32_t act_min, int32_t act_max)
{
    const int exact1 = in1_mult == (1 << 30) && in1_shift == 0;
    const int exact2 = in2_mult == (1 << 30) && in2_shift == 0;
    /* a: the input whose stage is exactly (a + a_offset) 2^19; b: the other one */
    const int8_t *pa = exact1 ? in1 : in2;
    const int8_t *pb = exact1 ? in2 : in1;
    const int32_t a_off = exact1 ? in1_offset : in2_offset;
    const int32_t b_off = exact1 ? in2_offset : in1_offset;
    const int32_t mb = exact1 ? in2_mult : in1_mult;
    const int32_t shb = exact1 ? in2_shift : in1_shift;
    const int fast = left_shift == 20 && (exact1 || exact2) && mb >= 0 && shb <= 0 &&
                     shb >= -31 && out_mult >= 0 && out_shift <= -1 && out_shift >= -31 &&
                     a_off >= -127 && a_off <= 128 && b_off >= -127 && b_off <= 128 &&
                     out_offset >= -128 && out_offset <= 127;
    if (!fast) {
        for (int32_t i = 0; i < size; i++) {
            out[i] = te_add_elem_s8(in1[i], in2[i], in1_offset, in1_mult, in1_shift, in2_offset,
                                    in2_mult, in2_shift, left_shift, out_offset, out_mult,
                                    out_shift, act_min, act_max);
        }
        return;
    }
    const int32_t eb = -shb;
    const int32_t eo = -out_shift;
    const int32_t b_off21 = (int32_t)((uint32_t)b_off << 21);
    /* rb: 2^(eb - 1) (eb >= 1) or 0, plus a_offset 2^(19 + eb) where |rb| stays below 1.5 2^30 */
    const int64_t rb_round = eb > 0 ? ((int64_t)1 << (eb - 1)) : 0;
    const int64_t rb_fold = rb_round + (int64_t)a_off * ((int64_t)1 << (19 + eb));
    const int fold = rb_fold < 3 * ((int64_t)1 << 29) && rb_fold > -3 * ((int64_t)1 << 29);
    const int32_t rb = (int32_t)(fold ? rb_fold : rb_round);
    const int32_t a_off20 = fold ? 0 : (int32_t)((uint32_t)a_off << 20);
    /* ro = (2 out_offset + 1) 2^(eo - 1) where |ro| < 2^30 (post = 0), else 2^(eo - 1) */
    const int64_t ro_fold = (int64_t)(2 * out_offset + 1) * ((int64_t)1 << (eo - 1));
    const int post = ro_fold >= ((int64_t)1 << 30) || ro_fold <= -((int64_t)1 << 30);
    const int32_t ro = post ? (int32_t)(1u << (eo - 1)) : (int32_t)ro_fold;
    const int full = act_min == -128 && act_max == 127;
    int32_t done = 0;
#if TE_DSP_NATIVE
    if (fold && !post) {
        done = size & ~3;
        te_add_dsp_blocks(pa, pb, out, size >> 2, b_off21, mb, rb, eb, out_mult, ro, eo);
        if (!full) {
            te_add_dsp_clamp(out, done, act_min, act_max);
        }
    }
#endif
    te_add_dsp_loop(pa + done, pb + done, out + done, size - done, a_off20, b_off21, mb, rb, eb,
                    out_mult, ro, eo, out_offset, act_min, act_max, post, full);
}
