/*
 * te_dsp.h - helpers for kernels that use the Armv7E-M DSP extension (Cortex-M4/M7):
 * SMLAD / SXTB16 through ACLE (arm_acle.h) or inline asm, word loads, and an exact,
 * cheaper form of TFLite's MultiplyByQuantizedMultiplier.
 *
 * Kernels named te_*_dsp include this header.  Python selects such a kernel only for a
 * target with the DSP extension, so in a generated project this header is compiled with
 * __ARM_FEATURE_DSP defined.  Without it (the host build of tests/ckernels.py), every
 * helper falls back to plain C with the same result, bit for bit, so the kernels' logic
 * can also be tested natively against their portable twins.
 *
 * Lane conventions (as the instructions define them):
 *   te_sxtb16(x)      = (int16)x[byte0] | (int16)x[byte2] << 16
 *   te_sxtb16_ror8(x) = (int16)x[byte1] | (int16)x[byte3] << 16
 *   te_smlad(a, b, acc) = acc + a.lo * b.lo + a.hi * b.hi   (16-bit signed lanes)
 */
#ifndef TE_DSP_H
#define TE_DSP_H

#include <stdint.h>
#include <string.h>

#include "te_common.h"

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>
#define TE_DSP_NATIVE 1
#else
#define TE_DSP_NATIVE 0
#endif

/* Four int8 (or two int16) as one 32-bit word, any alignment (LDR on Cortex-M4/M7). */
static inline int32_t te_read_w(const void *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Same, advancing the pointer by 4 bytes. */
static inline int32_t te_read_s8x4_ia(const int8_t **p)
{
    const int32_t v = te_read_w(*p);
    *p += 4;
    return v;
}

static inline void te_write_w(void *p, int32_t v) { memcpy(p, &v, 4); }

#if TE_DSP_NATIVE
static inline int32_t te_sxtb16(int32_t x) { return (int32_t)__sxtb16((uint32_t)x); }

static inline int32_t te_sxtb16_ror8(int32_t x)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

static inline int32_t te_smlad(int32_t a, int32_t b, int32_t acc)
{
    return __smlad(a, b, acc);
}

static inline int32_t te_smuad(int32_t a, int32_t b) { return __smuad(a, b); }

/* (a.lo16 | b.lo16 << 16): PKHBT a, b, LSL #16 */
static inline int32_t te_pkhbt(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

/* (a.hi16 >> 16 | b.hi16): PKHTB b, a, ASR #16 (b's top half, a's top half in the bottom) */
static inline int32_t te_pkhtb(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(b), "r"(a));
    return r;
}
#else
static inline int32_t te_dsp_pack16(int32_t lo, int32_t hi)
{
    return (int32_t)(((uint32_t)(uint16_t)lo) | ((uint32_t)(uint16_t)hi << 16));
}

static inline int32_t te_sxtb16(int32_t x)
{
    return te_dsp_pack16((int8_t)(x & 0xff), (int8_t)((x >> 16) & 0xff));
}

static inline int32_t te_sxtb16_ror8(int32_t x)
{
    return te_dsp_pack16((int8_t)((x >> 8) & 0xff), (int8_t)((uint32_t)x >> 24));
}

static inline int32_t te_smlad(int32_t a, int32_t b, int32_t acc)
{
    const int32_t lo = (int32_t)(int16_t)(a & 0xffff) * (int16_t)(b & 0xffff);
    const int32_t hi = (int32_t)(int16_t)((uint32_t)a >> 16) * (int16_t)((uint32_t)b >> 16);
    /* SMLAD wraps modulo 2^32 (it only sets the Q flag) */
    return (int32_t)((uint32_t)acc + (uint32_t)lo + (uint32_t)hi);
}

static inline int32_t te_smuad(int32_t a, int32_t b) { return te_smlad(a, b, 0); }

static inline int32_t te_pkhbt(int32_t a, int32_t b)
{
    return (int32_t)(((uint32_t)a & 0xffffu) | ((uint32_t)b << 16));
}

static inline int32_t te_pkhtb(int32_t a, int32_t b)
{
    return (int32_t)(((uint32_t)a >> 16) | ((uint32_t)b & 0xffff0000u));
}
#endif

/*
 * TFLite MultiplyByQuantizedMultiplier(x, multiplier, shift), bit-exact with te_mbqm for any
 * int32 multiplier (negative ones too: quantizers other than TensorFlow's give negative
 * per-channel weight scales) and shift in [-31, 30], except SRDHM's one saturating case
 * x * 2^max(shift, 0) = multiplier = INT32_MIN (the compiler keeps the portable kernels
 * where it could occur: tinyengine.ops.conv.srdhm_may_saturate):
 *   SRDHM(a, m) = floor((a * m + 2^30) / 2^31)  (equal to gemmlowp's nudge-and-truncate
 *   for both signs of a * m), then RoundingDivideByPOT with the remainder compared to a
 *   threshold.
 */
static inline int32_t te_requant_dsp(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    const int64_t ab = (int64_t)(int32_t)((uint32_t)x << left) * multiplier + ((int64_t)1 << 30);
    const int32_t s = (int32_t)(ab >> 31);
    const int32_t mask = (int32_t)(((uint32_t)1 << right) - 1u);
    const int32_t threshold = (mask >> 1) + (int32_t)((uint32_t)s >> 31);
    return (s >> right) + ((s & mask) > threshold ? 1 : 0);
}

/*
 * Widen int8 columns for the SMLAD convolution stages (te_conv_2d_mat_mult_s8_dsp.h):
 * k values of column a (and of column b unless it is NULL) become, per group of 4 values
 * v, the two words te_sxtb16(v), te_sxtb16_ror8(v); with two columns the groups
 * interleave as [a words][b words].  The last group is zero-padded when k % 4 != 0.
 * dst must be word-aligned and hold (b ? 16 : 8) * ceil(k / 4) bytes.
 */
static inline void te_dsp_widen_cols(const int8_t *a, const int8_t *b, int32_t k, int32_t *dst)
{
    const int32_t full = k >> 2;
    const int32_t rest = k & 3;
    if (b != NULL) {
        for (int32_t g = 0; g < full; ++g) {
            const int32_t va = te_read_w(a);
            const int32_t vb = te_read_w(b);
            a += 4;
            b += 4;
            dst[0] = te_sxtb16(va);
            dst[1] = te_sxtb16_ror8(va);
            dst[2] = te_sxtb16(vb);
            dst[3] = te_sxtb16_ror8(vb);
            dst += 4;
        }
        if (rest) {
            uint32_t va = 0, vb = 0;
            for (int32_t i = 0; i < rest; ++i) {
                va |= (uint32_t)(uint8_t)a[i] << (8 * i);
                vb |= (uint32_t)(uint8_t)b[i] << (8 * i);
            }
            dst[0] = te_sxtb16((int32_t)va);
            dst[1] = te_sxtb16_ror8((int32_t)va);
            dst[2] = te_sxtb16((int32_t)vb);
            dst[3] = te_sxtb16_ror8((int32_t)vb);
        }
        return;
    }
    for (int32_t g = 0; g < full; ++g) {
        const int32_t va = te_read_w(a);
        a += 4;
        dst[0] = te_sxtb16(va);
        dst[1] = te_sxtb16_ror8(va);
        dst += 2;
    }
    if (rest) {
        uint32_t va = 0;
        for (int32_t i = 0; i < rest; ++i) {
            va |= (uint32_t)(uint8_t)a[i] << (8 * i);
        }
        dst[0] = te_sxtb16((int32_t)va);
        dst[1] = te_sxtb16_ror8((int32_t)va);
    }
}

/* SMMULR: (a * b + 2^31) >> 32, the rounded high word of the 64-bit product. */
static inline int32_t te_smmulr(int32_t a, int32_t b)
{
#if TE_DSP_NATIVE
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
#else
    return (int32_t)(((int64_t)a * b + ((int64_t)1 << 31)) >> 32);
#endif
}

/* SMMLAR: acc + ((a * b + 2^31) >> 32), the rounded high word of the product plus acc. */
static inline int32_t te_smmlar(int32_t a, int32_t b, int32_t acc)
{
#if TE_DSP_NATIVE
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
#else
    return (int32_t)((uint32_t)acc + (uint32_t)te_smmulr(a, b));
#endif
}

/* SSAT #8: x saturated to [-128, 127]. */
static inline int32_t te_ssat8(int32_t x)
{
#if TE_DSP_NATIVE
    return __ssat(x, 8);
#else
    return te_clamp_i32(x, -128, 127);
#endif
}

/*
 * Compact per-channel requantization of the DSP convolution / fully connected kernels: per
 * output channel the TFLite multiplier m (int32) and e = -shift (int8), 5 bytes, plus a mode
 * chosen at compile time by tinyengine.ops.conv.requant_dsp (bits below).
 *
 * TE_RQ_FAST: every channel has e in [1, 31], m in [2^30, 2^31) or m = 0 (a negative m is
 *   folded into the channel's weights and bias at compile time where exact:
 *   tinyengine.ops.conv.fold_negative_multipliers), |acc| < 2^30, and
 *   |R| < 2^30 - 2 with R = (2 * output_offset + 1) * 2^(e-1) (te_requant_round_dsp; see
 *   TE_RQ_POST_OFFSET otherwise).  Then
 *     te_mbqm(x, m, -e) + output_offset = te_requant_fast_dsp(x, m, R, e)
 *       = (SMMLAR(2x, m, R) - [x < 0]) >> e   (4 instructions)
 *   SMMLAR(2x, m, R) = R + floor((x m + 2^30) / 2^31) = R + SRDHM(x, m) = R + s, and
 *   RoundingDivideByPOT(s, e) = floor((s + 2^(e-1) - [s < 0]) / 2^e); [s < 0] may be read as
 *   [x < 0] (they differ only for x = -1, m = 2^30, or m = 0, x < 0, where s = 0 and both give
 *   floor((2^(e-1) - {0, 1}) / 2^e) = 0); adding output_offset * 2^e before the shift adds
 *   output_offset after it.
 * TE_RQ_FULL_RANGE: act_min = -128 and act_max = 127 (the clamp is SSAT #8).
 * TE_RQ_POST_OFFSET (with TE_RQ_FAST, for layers where some |R| would reach 2^30 - 2): R is
 *   2^(e-1) instead (te_requant_round_dsp(0, e)) and output_offset is added after the shift.
 * Without TE_RQ_FAST: te_requant_dsp(x, m, -e) + output_offset, clamped (any shift).
 */
#define TE_RQ_FAST 1
#define TE_RQ_FULL_RANGE 2
#define TE_RQ_POST_OFFSET 4

/* R = (2 * output_offset + 1) * 2^(e - 1) (in range under TE_RQ_FAST's preconditions). */
static inline int32_t te_requant_round_dsp(int32_t output_offset, int32_t e)
{
    return (int32_t)((uint32_t)(2 * output_offset + 1) << e) >> 1;
}

/* te_mbqm(x, m, -e) + output_offset under TE_RQ_FAST's preconditions, r from
 * te_requant_round_dsp. */
static inline int32_t te_requant_fast_dsp(int32_t x, int32_t m, int32_t r, int32_t e)
{
#if TE_DSP_NATIVE
    int32_t t;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(t) : "r"((int32_t)((uint32_t)x << 1)), "r"(m), "r"(r));
    t -= (int32_t)((uint32_t)x >> 31);
    return t >> e;
#else
    const int32_t t = (int32_t)((uint32_t)r + (uint32_t)(((int64_t)x * 2 * m + ((int64_t)1 << 31)) >> 32));
    return (t - (int32_t)((uint32_t)x >> 31)) >> e;
#endif
}

#endif /* TE_DSP_H */
