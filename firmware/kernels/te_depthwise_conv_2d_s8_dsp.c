/* te_depthwise_conv_2d_s8_dsp.c - int8 depthwise convolution, 4 channels per 32-bit load
 * with SXTAB16 + SMLABB/SMLATT (Armv7E-M DSP).  Contract: te_depthwise_conv_2d_s8_dsp.h. */
#include "te_depthwise_conv_2d_s8_dsp.h"

#include "te_dsp.h"

/* Which fast pixel loops are compiled in (1, the default: all of them, as in the host build
 * and the kernel tests).  A generated project sets to 0, with -D in its Makefile, those that
 * none of its calls can take (tinyengine/ops/depthwise_conv.py dsp_paths).  A loop left out
 * leaves its pixels to te_dw_run_wide, if compiled in, or to te_dw_run_int8 (always compiled:
 * any window, the int8 weights, any requantization), so a wrong 0 costs instructions, never
 * correctness:
 *   TE_DW_DSP_3X3_WIDE  3x3 windows inside the image, widened weights (te_dw_run_3x3_wide)
 *   TE_DW_DSP_3X3_INT8  3x3 windows inside the image, int8 weights, fast requantization
 *                       (te_dw_run_3x3_int8)
 *   TE_DW_DSP_RUN_WIDE  any window with the widened weights (te_dw_run_wide)
 * With neither widened-weight loop the weights are not widened (the scratch is not used). */
#ifndef TE_DW_DSP_3X3_WIDE
#define TE_DW_DSP_3X3_WIDE 1
#endif
#ifndef TE_DW_DSP_3X3_INT8
#define TE_DW_DSP_3X3_INT8 1
#endif
#ifndef TE_DW_DSP_RUN_WIDE
#define TE_DW_DSP_RUN_WIDE 1
#endif

/* TE_DW_TAP(p, off): one tap for four channels, a0..a3 += (x.c + input_offset) * w.c with x
 * the 4 input bytes at p + off (channels 0..3) and w the weights at wp: with wide == 0 the 4
 * int8 weights (wp advanced by 4), with wide == 1 the two words of widened weights (scratch,
 * wp advanced by 8).  off2 holds the input offset in both 16-bit lanes.  On the DSP target
 * one asm block with the loads inside (SXTAB16 sign-extends and adds the offset in one
 * instruction, SMLABB/SMLATT multiply-accumulate the 16-bit lanes), so that the compiler
 * keeps each tap's instructions together: its scheduler otherwise hoists every load of an
 * unrolled window and spills.  Plain C elsewhere, same results. */
#if TE_DSP_NATIVE
#define TE_DW_TAP_ASM(load_x, off_cons)                                           \
        __asm__ volatile(load_x "\n\t"                                            \
                "ldr %[wv], [%[wp]], #4\n\t"                                      \
                "sxtab16 %[t1], %[o2], %[xv]\n\t"                                 \
                "sxtb16 %[t2], %[wv]\n\t"                                         \
                "smlabb %[a0], %[t1], %[t2], %[a0]\n\t"                           \
                "smlatt %[a2], %[t1], %[t2], %[a2]\n\t"                           \
                "sxtab16 %[xv], %[o2], %[xv], ror #8\n\t"                         \
                "sxtb16 %[wv], %[wv], ror #8\n\t"                                 \
                "smlabb %[a1], %[xv], %[wv], %[a1]\n\t"                           \
                "smlatt %[a3], %[xv], %[wv], %[a3]"                               \
                : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3),     \
                  [t1] "=&r"(t1_), [t2] "=&r"(t2_), [xv] "=&r"(xv_), [wv] "=&r"(wv_), \
                  [wp] "+r"(wp)                                                   \
                : [o2] "r"(off2), [p] "r"(p_), [off] off_cons(off_))
/* wide: the weights already widened, {(w0, w2), (w1, w3)} as two int16-pair words */
#define TE_DW_TAP_ASM_WIDE(load_x, off_cons)                                      \
        __asm__ volatile(load_x "\n\t"                                            \
                "ldrd %[t1], %[t2], [%[wp]], #8\n\t"                              \
                "sxtab16 %[wv], %[o2], %[xv]\n\t"                                 \
                "sxtab16 %[xv], %[o2], %[xv], ror #8\n\t"                         \
                "smlabb %[a0], %[wv], %[t1], %[a0]\n\t"                           \
                "smlatt %[a2], %[wv], %[t1], %[a2]\n\t"                           \
                "smlabb %[a1], %[xv], %[t2], %[a1]\n\t"                           \
                "smlatt %[a3], %[xv], %[t2], %[a3]"                               \
                : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3),     \
                  [t1] "=&r"(t1_), [t2] "=&r"(t2_), [xv] "=&r"(xv_), [wv] "=&r"(wv_), \
                  [wp] "+r"(wp)                                                   \
                : [o2] "r"(off2), [p] "r"(p_), [off] off_cons(off_))
#define TE_DW_TAP_X(load_x, off_cons, ptr, off)                                   \
    do {                                                                          \
        int32_t xv_, wv_, t1_, t2_;                                               \
        const int8_t *p_ = (ptr);                                                 \
        const int32_t off_ = (off);                                               \
        if (wide) {                                                               \
            TE_DW_TAP_ASM_WIDE(load_x, off_cons);                                 \
        } else {                                                                  \
            TE_DW_TAP_ASM(load_x, off_cons);                                      \
        }                                                                         \
    } while (0)
/* x at p, p + off, p + 2 * off */
#define TE_DW_TAP0(ptr) TE_DW_TAP_X("ldr %[xv], [%[p]]", "i", ptr, 0)
#define TE_DW_TAP(ptr, off) TE_DW_TAP_X("ldr %[xv], [%[p], %[off]]", "r", ptr, off)
#define TE_DW_TAP2(ptr, off) TE_DW_TAP_X("ldr %[xv], [%[p], %[off], lsl #1]", "r", ptr, off)
#else
/* a0..a3 += (x.c + input_offset) * w.c for the 4 int8 of x and w (bytes 0..3) */
#define TE_DW_MAC4(x, w)                                                          \
    do {                                                                          \
        const int32_t xv_ = (x), wv_ = (w), o_ = (int16_t)(off2 & 0xffff);        \
        a0 += ((int8_t)(xv_ & 0xff) + o_) * (int8_t)(wv_ & 0xff);                 \
        a1 += ((int8_t)((xv_ >> 8) & 0xff) + o_) * (int8_t)((wv_ >> 8) & 0xff);   \
        a2 += ((int8_t)((xv_ >> 16) & 0xff) + o_) * (int8_t)((wv_ >> 16) & 0xff); \
        a3 += ((int8_t)((uint32_t)xv_ >> 24) + o_) * (int8_t)((uint32_t)wv_ >> 24); \
    } while (0)
#define TE_DW_TAP(ptr, off)                                                       \
    do {                                                                          \
        if (wide) {                                                               \
            const int32_t xv_ = te_read_w((ptr) + (off)), o_ = (int16_t)(off2 & 0xffff); \
            const int32_t e_ = te_read_w(wp), d_ = te_read_w(wp + 4);             \
            a0 += ((int8_t)(xv_ & 0xff) + o_) * (int16_t)(e_ & 0xffff);           \
            a2 += ((int8_t)((xv_ >> 16) & 0xff) + o_) * (int16_t)((uint32_t)e_ >> 16); \
            a1 += ((int8_t)((xv_ >> 8) & 0xff) + o_) * (int16_t)(d_ & 0xffff);    \
            a3 += ((int8_t)((uint32_t)xv_ >> 24) + o_) * (int16_t)((uint32_t)d_ >> 16); \
            wp += 8;                                                              \
        } else {                                                                  \
            TE_DW_MAC4(te_read_w((ptr) + (off)), te_read_w(wp));                  \
            wp += 4;                                                              \
        }                                                                         \
    } while (0)
#define TE_DW_TAP0(ptr) TE_DW_TAP(ptr, 0)
#define TE_DW_TAP2(ptr, off) TE_DW_TAP(ptr, 2 * (off))
#endif

/* Requantization of channel c (header): s = SRDHM(acc, m) = SMMULR(2 * acc, m), then
 * RoundingDivideByPOT(s, e) + output_offset = ((s - [acc < 0]) >> k + oo2) >> 1 with k = e - 1
 * and oo2 = 2 * output_offset + 1 (arithmetic shifts; header).  [s < 0] may be read as
 * [acc < 0]: they differ only for acc = -1, m = 2^30, where s = 0 and both give 0 since
 * e >= 1.  fast: act_min = output_offset = -128, act_max = 127: the clamp is SSAT #8 (which
 * also takes the last shift) and the term [acc < 0] is dropped (for acc < 0 the value is
 * <= output_offset = act_min either way, since s <= 0). */
static inline int32_t te_dw_out(int32_t acc, int32_t m, int32_t k, int32_t oo2, int32_t lo,
                                int32_t hi, const int fast)
{
    int32_t s = te_smmulr((int32_t)((uint32_t)acc << 1), m);
    if (!fast) {
        s -= (int32_t)((uint32_t)acc >> 31);
    }
    const int32_t y = ((s >> k) + oo2) >> 1;
    return fast ? te_ssat8(y) : te_clamp_i32(y, lo, hi);
}

typedef struct {
    int32_t groups, in_c, k_h, k_w, row_step, col_step, off2, input_offset, output_offset,
        act_min, act_max, in_step;
    const int8_t *tail_filter;
    const int32_t *rq;
} te_dw_args;

/* Channel c's words in rq (header): per group of up to 4 channels (n of them: 4, or in_c % 4
 * for the last) 2n + 1 words: n biases, n multipliers, the n shift bytes k in one word. */
static inline const int32_t *te_dw_group_of(const te_dw_args *a, int32_t c, int32_t *n)
{
    const int32_t left = a->in_c - (c & ~3);
    *n = left < 4 ? left : 4;
    return a->rq + 9 * (c >> 2);
}

static inline int32_t te_dw_bias_of(const te_dw_args *a, int32_t c)
{
    int32_t n;
    return te_dw_group_of(a, c, &n)[c & 3];
}

/* te_dw_out(acc, ...) for channel c, general (not fast) */
static inline int32_t te_dw_out_c(const te_dw_args *a, int32_t acc, int32_t c)
{
    int32_t n;
    const int32_t *q = te_dw_group_of(a, c, &n);
    const int32_t k = ((const uint8_t *)(q + 2 * n))[c & 3];
    return te_dw_out(acc, q[n + (c & 3)], k, 2 * a->output_offset + 1, a->act_min, a->act_max,
                     0);
}

/* a0..a3 = the group's 4 biases at q (two LDRD on the DSP target) */
#if TE_DSP_NATIVE
#define TE_DW_BIAS4(q_)                                                          \
    __asm__ volatile("ldrd %[a0], %[a1], [%[q]]\n\t"                           \
                     "ldrd %[a2], %[a3], [%[q], #8]"                            \
                     : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=r"(a2), [a3] "=r"(a3) \
                     : [q] "r"(q_), "m"(*(const int32_t(*)[4])(q_)))
#else
#define TE_DW_BIAS4(q_) (a0 = (q_)[0], a1 = (q_)[1], a2 = (q_)[2], a3 = (q_)[3])
#endif

/* The in_c % 4 channels after the groups of one pixel, one at a time: taps [ky0, ky1) x
 * [kx0, kx1), win at the pixel's tap (ky0, kx0) (channel 0). */
__attribute__((noinline, cold)) static void te_dw_tail(const int8_t *win, int8_t *out, int32_t ky0, int32_t ky1,
                                                 int32_t kx0, int32_t kx1, const te_dw_args *a)
{
    const int32_t taps = a->k_h * a->k_w;
    for (int32_t c = a->groups * 4; c < a->in_c; ++c) {
        const int8_t *wt = a->tail_filter + (size_t)(c - a->groups * 4) * taps;
        int32_t acc = te_dw_bias_of(a, c);
        for (int32_t ky = ky0; ky < ky1; ++ky) {
            const int8_t *px = win + c + (ptrdiff_t)(ky - ky0) * a->row_step;
            for (int32_t kx = kx0; kx < kx1; ++kx, px += a->col_step) {
                acc += (int32_t)wt[ky * a->k_w + kx] * (*px + a->input_offset);
            }
        }
        out[c] = (int8_t)te_dw_out_c(a, acc, c);
    }
}

/* The general requantization of a group's 4 channels (any output offset and activation
 * range); q = the group's 4 multipliers, then its word of shift bytes. */
__attribute__((noinline, cold)) static void te_dw_store4_general(int8_t *o, const int32_t *q,
                                                           int32_t a0, int32_t a1, int32_t a2,
                                                           int32_t a3, const te_dw_args *a)
{
    const uint8_t *k = (const uint8_t *)(q + 4);
    const int32_t oo2 = 2 * a->output_offset + 1, lo = a->act_min, hi = a->act_max;
    o[0] = (int8_t)te_dw_out(a0, q[0], k[0], oo2, lo, hi, 0);
    o[1] = (int8_t)te_dw_out(a1, q[1], k[1], oo2, lo, hi, 0);
    o[2] = (int8_t)te_dw_out(a2, q[2], k[2], oo2, lo, hi, 0);
    o[3] = (int8_t)te_dw_out(a3, q[3], k[3], oo2, lo, hi, 0);
}

/* The 4 channels' outputs of a group from a0..a3, q = the group's 9 words in rq (4 biases,
 * 4 multipliers, the word of 4 shift bytes).  With full (fast requantization, te_dw_out,
 * oo2 = -255) on the DSP target one asm block: LDRD of two multipliers, then per channel
 * LDRB k, LSL, SMMULR, ASR by k, SUBS #255, SSAT with ASR #1, STRB (the constant and the
 * offsets from q need no register); otherwise te_dw_store4_general. */
#if TE_DSP_NATIVE
#define TE_DW_RQ1(acc, m, koff, ooff)                                           \
        "ldrb %[k], [%[q], #" koff "]\n\t"                                       \
        "lsl %[" acc "], %[" acc "], #1\n\t"                                    \
        "smmulr %[" acc "], %[" acc "], %[" m "]\n\t"                           \
        "asr %[" acc "], %[" acc "], %[k]\n\t"                                  \
        "subs %[" acc "], %[" acc "], #255\n\t"                                \
        "ssat %[" acc "], #8, %[" acc "], asr #1\n\t"                           \
        "strb %[" acc "], [%[o], #" ooff "]\n\t"
#define TE_DW_STORE4_FULL(o_, q_)                                                \
    do {                                                                         \
        int32_t m_, n_, k_;                                                      \
        __asm__ volatile("ldrd %[m], %[n], [%[q], #16]\n\t"                      \
                         TE_DW_RQ1("a0", "m", "32", "0")                         \
                         TE_DW_RQ1("a1", "n", "33", "1")                         \
                         "ldrd %[m], %[n], [%[q], #24]\n\t"                      \
                         TE_DW_RQ1("a2", "m", "34", "2")                         \
                         TE_DW_RQ1("a3", "n", "35", "3")                         \
                         : [a0] "+&r"(a0), [a1] "+&r"(a1), [a2] "+&r"(a2),       \
                           [a3] "+&r"(a3), [m] "=&r"(m_), [n] "=&r"(n_),         \
                           [k] "=&r"(k_)                                         \
                         : [q] "r"(q_), [o] "r"(o_)                              \
                         : "cc", "memory");                                      \
    } while (0)
#else
#define TE_DW_STORE4_FULL(o_, q_)                                                \
    do {                                                                         \
        const uint8_t *k_ = (const uint8_t *)((q_) + 8);                         \
        (o_)[0] = (int8_t)te_dw_out(a0, (q_)[4], k_[0], -255, -128, 127, 1);     \
        (o_)[1] = (int8_t)te_dw_out(a1, (q_)[5], k_[1], -255, -128, 127, 1);     \
        (o_)[2] = (int8_t)te_dw_out(a2, (q_)[6], k_[2], -255, -128, 127, 1);     \
        (o_)[3] = (int8_t)te_dw_out(a3, (q_)[7], k_[3], -255, -128, 127, 1);     \
    } while (0)
#endif
#define TE_DW_STORE4(o_, q_)                                                     \
    do {                                                                         \
        if (full) {                                                              \
            TE_DW_STORE4_FULL(o_, q_);                                           \
        } else {                                                                 \
            te_dw_store4_general(o_, (q_) + 4, a0, a1, a2, a3, a);               \
        }                                                                        \
    } while (0)

/* n consecutive output pixels of one row whose windows are wholly inside the image, 3x3:
 * every group of 4 channels with the 9 taps unrolled, then the remaining channels. */
static inline __attribute__((always_inline)) void te_dw_run_3x3_body(
    const int8_t *win, int32_t n, const int8_t *w0, int8_t *out,
    const te_dw_args *a, const int full, const int wide)
{
    const int32_t rs = a->row_step, cs = a->col_step, off2 = a->off2;
    for (; n > 0; --n, win += a->in_step, out += a->in_c) {
        const int8_t *w = w0;
        const int32_t *q = a->rq;
        const int8_t *pg = win;
        int8_t *o = out;
        for (int32_t g = a->groups; g > 0; --g, pg += 4, q += 9, o += 4) {
            int32_t a0, a1, a2, a3;
            TE_DW_BIAS4(q);
            const int8_t *p = pg;
            const int8_t *wp = w;
            TE_DW_TAP0(p);
            TE_DW_TAP(p, cs);
            TE_DW_TAP2(p, cs);
            p += rs;
            TE_DW_TAP0(p);
            TE_DW_TAP(p, cs);
            TE_DW_TAP2(p, cs);
            p += rs;
            TE_DW_TAP0(p);
            TE_DW_TAP(p, cs);
            TE_DW_TAP2(p, cs);
            w = wp;
            TE_DW_STORE4(o, q);
        }
        if (a->groups * 4 < a->in_c) {
            te_dw_tail(win, out, 0, 3, 0, 3, a);
        }
    }
}

/* n consecutive output pixels of one row that share the taps [ky0, ky1) x [kx0, kx1) inside
 * the image (padded taps add nothing: the input offset is applied per tap); win points at
 * the first pixel's tap (ky0, kx0). */
static inline __attribute__((always_inline)) void te_dw_run_body(
    const int8_t *win, int32_t n, const int8_t *w0, int8_t *out,
    int32_t ky0, int32_t ky1, int32_t kx0, int32_t kx1, const te_dw_args *a, const int full,
    const int wide)
{
    const int32_t rs = a->row_step, cs = a->col_step, off2 = a->off2;
    const int32_t tap_bytes = wide ? 8 : 4;
    const int32_t nx = kx1 - kx0;
    const int32_t w_skip = (a->k_w - nx) * tap_bytes;       /* a row's padded taps */
    const int32_t w_group = a->k_h * a->k_w * tap_bytes;    /* weight bytes of a group */
    w0 += (ky0 * a->k_w + kx0) * tap_bytes;
    for (; n > 0; --n, win += a->in_step, out += a->in_c) {
        const int8_t *w = w0;
        const int32_t *q = a->rq;
        const int8_t *pg = win;
        int8_t *o = out;
        for (int32_t g = a->groups; g > 0; --g, pg += 4, q += 9, o += 4, w += w_group) {
            int32_t a0, a1, a2, a3;
            TE_DW_BIAS4(q);
            const int8_t *p = pg;
            const int8_t *wp = w;
            for (int32_t ky = ky0; ky < ky1; ++ky, p += rs, wp += w_skip) {
                const int8_t *px = p;
                int32_t kx = nx;
                for (; kx >= 2; kx -= 2, px += 2 * cs) {
                    TE_DW_TAP0(px);
                    TE_DW_TAP(px, cs);
                }
                if (kx) {
                    TE_DW_TAP0(px);
                }
            }
            TE_DW_STORE4(o, q);
        }
        if (a->groups * 4 < a->in_c) {
            te_dw_tail(win, out, ky0, ky1, kx0, kx1, a);
        }
    }
}

/* The pixel loops for the fast requantization (full): 3x3 windows inside the image, one
 * function per weight layout (each compiled alone: its code is the same whether the other
 * one is compiled in or not), any window with the widened weights. */
__attribute__((noinline)) static void te_dw_run_3x3_wide(const int8_t *win, int32_t n,
                                                         const int8_t *w, int8_t *out,
                                                         const te_dw_args *a)
{
    te_dw_run_3x3_body(win, n, w, out, a, 1, 1);
}

__attribute__((noinline)) static void te_dw_run_3x3_int8(const int8_t *win, int32_t n,
                                                         const int8_t *w, int8_t *out,
                                                         const te_dw_args *a)
{
    te_dw_run_3x3_body(win, n, w, out, a, 1, 0);
}

__attribute__((noinline)) static void te_dw_run_wide(const int8_t *win, int32_t n,
                                                     const int8_t *w, int8_t *out,
                                                     int32_t ky0, int32_t ky1, int32_t kx0,
                                                     int32_t kx1, const te_dw_args *a)
{
    te_dw_run_body(win, n, w, out, ky0, ky1, kx0, kx1, a, 1, 1);
}

/* Any window with the int8 weights (layers without the widened weights, and every layer
 * with the general requantization: any output offset and activation range, none in the
 * shared models): one copy of the pixel loops, full tested per group. */
__attribute__((noinline)) static void te_dw_run_int8(
    const int8_t *win, int32_t n, const int8_t *w, int8_t *out, int32_t ky0, int32_t ky1,
    int32_t kx0, int32_t kx1, const te_dw_args *a, int full)
{
    te_dw_run_body(win, n, w, out, ky0, ky1, kx0, kx1, a, full, 0);
}

/* Taps t in [0, k) with 0 <= base + t * dil < size: [*t0, *t1). */
static void te_dw_taps_inside(int32_t base, int32_t dil, int32_t k, int32_t size,
                              int32_t *t0, int32_t *t1)
{
    int32_t lo = 0, hi = k;
    while (lo < k && base + lo * dil < 0) {
        ++lo;
    }
    while (hi > lo && base + (hi - 1) * dil >= size) {
        --hi;
    }
    *t0 = lo;
    *t1 = hi > lo ? hi : lo;
}

/* One pixel with no tap inside the image: the bias alone. */
__attribute__((noinline, cold)) static void te_dw_bias_only(int8_t *out, const te_dw_args *a)
{
    for (int32_t c = 0; c < a->in_c; ++c) {
        out[c] = (int8_t)te_dw_out_c(a, te_dw_bias_of(a, c), c);
    }
}

void te_depthwise_conv_2d_s8_dsp(const int8_t *input, int32_t batches, int32_t in_h,
                                 int32_t in_w, int32_t in_c, const int8_t *filter,
                                 int32_t k_h, int32_t k_w, const int32_t *rq,
                                 int8_t *output, int32_t out_h, int32_t out_w,
                                 int32_t stride_h, int32_t stride_w, int32_t dil_h,
                                 int32_t dil_w, int32_t pad_top, int32_t pad_left,
                                 int32_t input_offset, int32_t output_offset, int32_t act_min,
                                 int32_t act_max, int32_t *scratch)
{
    te_dw_args a;
    const int full = act_min == -128 && act_max == 127 && output_offset == -128;
    const int wide = (TE_DW_DSP_3X3_WIDE || TE_DW_DSP_RUN_WIDE) && scratch != NULL &&
                     in_c >= 4 && full;
    const int32_t taps = k_h * k_w;
    const int8_t *wk = filter;          /* the weights the pixel loops read */
    a.groups = in_c >> 2;
    a.in_c = in_c;
    a.k_h = k_h;
    a.k_w = k_w;
    a.row_step = in_w * in_c * dil_h;
    a.col_step = in_c * dil_w;
    a.off2 = (int32_t)(((uint32_t)(uint16_t)input_offset << 16) | (uint16_t)input_offset);
    a.input_offset = input_offset;
    a.output_offset = output_offset;
    a.act_min = act_min;
    a.act_max = act_max;
    a.in_step = stride_w * in_c;
    a.tail_filter = filter + (size_t)a.groups * taps * 4;
    a.rq = rq;
    if (wide) {
        /* widen the groups' weights once: per tap {(w0, w2), (w1, w3)} as int16 pairs */
        const int32_t n = a.groups * taps;
        for (int32_t i = 0; i < n; ++i) {
            const int32_t v = te_read_w(filter + 4 * i);
            scratch[2 * i] = te_sxtb16(v);
            scratch[2 * i + 1] = te_sxtb16_ror8(v);
        }
        wk = (const int8_t *)scratch;
    }
    /* output columns [ox_lo, ox_hi) have every column tap inside the image */
    int32_t ox_lo = (pad_left + stride_w - 1) / stride_w;
    const int32_t last = in_w - 1 - (k_w - 1) * dil_w + pad_left;   /* max ox * stride_w */
    int32_t ox_hi = last >= 0 ? last / stride_w + 1 : 0;
    ox_hi = ox_hi < out_w ? ox_hi : out_w;
    ox_lo = ox_lo < ox_hi ? ox_lo : ox_hi;

    for (int32_t b = 0; b < batches; ++b) {
        const int8_t *in_b = input + (size_t)b * in_h * in_w * in_c;
        for (int32_t oy = 0; oy < out_h; ++oy) {
            const int32_t iy0 = oy * stride_h - pad_top;
            int32_t ky0, ky1;
            te_dw_taps_inside(iy0, dil_h, k_h, in_h, &ky0, &ky1);
            const int8_t *row = in_b + (ptrdiff_t)(iy0 + ky0 * dil_h) * in_w * in_c;
            int8_t *out_row = output + ((size_t)b * out_h + oy) * out_w * in_c;
            int32_t ox = 0;
            while (ox < out_w) {
                const int32_t ix0 = ox * stride_w - pad_left;
                int8_t *o = out_row + (size_t)ox * in_c;
                int32_t n = 1, kx0 = 0, kx1 = k_w;
                if (ox == ox_lo && ox_lo < ox_hi) {
                    n = ox_hi - ox_lo;          /* the run of interior columns */
                } else {
                    te_dw_taps_inside(ix0, dil_w, k_w, in_w, &kx0, &kx1);
                }
                if (ky0 >= ky1 || kx0 >= kx1) {
                    te_dw_bias_only(o, &a);
                } else {
                    const int8_t *win = row + (ptrdiff_t)(ix0 + kx0 * dil_w) * in_c;
                    /* a loop left out (TE_DW_DSP_*) leaves its pixels to the next one */
                    const int w3x3 = full && k_h == 3 && k_w == 3 && ky0 == 0 && ky1 == 3 &&
                                     kx0 == 0 && kx1 == 3;
                    if (TE_DW_DSP_3X3_WIDE && w3x3 && wide) {
                        te_dw_run_3x3_wide(win, n, wk, o, &a);
                    } else if (TE_DW_DSP_3X3_INT8 && w3x3 && !wide) {
                        te_dw_run_3x3_int8(win, n, filter, o, &a);
                    } else if (TE_DW_DSP_RUN_WIDE && wide) {
                        te_dw_run_wide(win, n, wk, o, ky0, ky1, kx0, kx1, &a);
                    } else {
                        te_dw_run_int8(win, n, filter, o, ky0, ky1, kx0, kx1, &a, full);
                    }
                }
                ox += n;
            }
        }
    }
}

void te_depthwise_conv_2d_s8_dsp_call(const te_conv_args *a, const int8_t *input,
                                      int8_t *output, int8_t *scratch)
{
    const int32_t *rq = te_conv_args_table(a, a->in_c, 4, &scratch);
    te_depthwise_conv_2d_s8_dsp(input, a->batches, a->in_h, a->in_w, a->in_c, a->weights, a->k_h,
                                a->k_w, rq, output, a->out_h, a->out_w, a->stride_h, a->stride_w,
                                a->dil_h, a->dil_w, a->pad_top, a->pad_left, a->in_value,
                                a->output_offset, a->act_min, a->act_max,
                                (a->flags & TE_CONV_ARGS_SCRATCH) ? (int32_t *)(void *)scratch
                                                                  : NULL);
}
