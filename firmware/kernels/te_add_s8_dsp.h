/*
 * te_add_s8_dsp - int8 ADD of two same-shape tensors for cores with the DSP extension
 * (Cortex-M4/M7): the twin of te_add_s8 (same arguments, same result bit for bit), with
 * TFLite Micro's per-element arithmetic rewritten around SMMLAR / SMMULR.
 *
 * Contract:
 *   Arguments, their ranges and the result: exactly those of te_add_s8 (te_add_s8.h).
 *   out may be the same buffer as in1 or in2.
 * Fast path (taken when its preconditions hold, checked once per call; otherwise the
 * kernel runs te_add_elem_s8 on every element, so any te_add_s8 arguments are accepted):
 *   left_shift == 20; one input (called `a` below; in1 or in2) has multiplier 2^30 and
 *   shift 0; the other (`b`) multiplier >= 0 and shift in [-31, 0]; out_mult >= 0,
 *   out_shift in [-31, -1]; input offsets in [-127, 128], out_offset in [-128, 127].
 *   TFLite's quantization of the input scales always gives the input of the larger scale
 *   (2^30, 0): its real multiplier s / (2 * max(s1, s2)) is exactly 0.5.
 *   On the core, groups of 4 elements run in an assembly loop (13 instructions an element)
 *   when a_offset 2^(19 + eb) and out_offset 2^eo can be folded into the rounding constants
 *   (eb = -shift of b, eo = -out_shift; both fold in every usual layer); an act range
 *   narrower than [-128, 127] is then applied by a second pass over those outputs (SSUB8 /
 *   SEL, 4 at a time).  The rest runs the same arithmetic in C.
 * Scratch: none.
 * Overlap contract (TE_OVERLAP: elementwise): out[i] is written after in1[i] and in2[i]
 *   are read, in increasing i, so out may start at (or before) either input (the clamp pass
 *   rewrites only outputs below every input byte still to be read).
 *
 * Exactness of the fast path.  x = a + a_offset, y = b + b_offset, so |x|, |y| <= 255;
 * floor division throughout; SRDHM(v, m) = floor((v m + 2^30) / 2^31) (gemmlowp's
 * nudge-and-truncate gives the same for both signs); RDBPOT(v, e) = floor((v + 2^(e-1) - [v < 0])
 * / 2^e) for e >= 1 and v for e = 0; SMMLAR(p, q, r) = r + floor((p q + 2^31) / 2^32).
 *   1. Input a: SRDHM(x 2^20, 2^30) = floor((x 2^50 + 2^30) / 2^31) = x 2^19 (2^30 is below
 *      one unit) and RDBPOT(., 0) is the identity: sa = x 2^19, no multiply at all.
 *   2. Input b, A = y 2^21 = b_offset 2^21 + b 2^21 (|A| < 2^29), m = its multiplier >= 0,
 *      e = -its shift: SMMLAR(A, m, 0) = floor((y 2^20 m + 2^30) / 2^31) = SRDHM(y 2^20, m) = s,
 *      |s| <= 255 2^20 m / 2^31 < 2^28.
 *      e = 0: sb = s = SMMLAR(A, m, 0).
 *      e >= 1: sb = RDBPOT(s, e) = (SMMLAR(A, m, 2^(e-1)) - [A < 0]) >> e.  [s < 0] may be read
 *      as [A < 0]: m >= 0, so s < 0 implies y < 0, and y < 0 with s = 0 gives
 *      floor((2^(e-1) - 1) / 2^e) = 0 = RDBPOT(0, e).
 *      Adding k 2^(19 + e) to the rounding constant adds k 2^19 after the shift (a multiple
 *      of 2^e), so with k = a_offset the stage gives sb + a_offset 2^19 and S below is that
 *      plus a 2^19; the kernel does so while |rounding constant| < 1.5 2^30, which keeps
 *      every intermediate within int32 (|s| < 2^28).
 *   3. S = sa + sb, |S| <= 255 2^19 + 255 2^20 < 2^29 (TFLM's int32 sum does not wrap either),
 *      X = 2 S, |X| < 2^30: SMMLAR(X, mo, R) = R + q with q = SRDHM(S, mo) as in 2, |q| <= |S|,
 *      [q < 0] read as [X < 0] likewise, and for eo = -out_shift >= 1
 *        RDBPOT(q, eo) + out_offset = (SMMLAR(X, mo, R) - [X < 0]) >> eo
 *      with R = (2 out_offset + 1) 2^(eo-1) (out_offset 2^eo before the shift is out_offset
 *      after it) where |R| < 2^30; otherwise R = 2^(eo-1) and out_offset is added after the
 *      shift.  |R + q| < 2^30 + 2^29: no overflow.
 *   4. The clamp: SSAT #8 when [act_min, act_max] = [-128, 127], else min / max (the clamp
 *      pass, or te_clamp_i32 in C).
 * ADD is symmetric in its two (input, offset, multiplier, shift) sets, so either input may
 * be `a`.  tests/test_kernels_add.py checks the kernel against te_add_s8 on the host (this
 * arithmetic in C) and against TFLM on Cortex-M7 and M4 (the assembly) over all 65536
 * (in1, in2) pairs for many layers, and stages 2 and 3 over all their inputs.
 */
#ifndef TE_ADD_S8_DSP_H
#define TE_ADD_S8_DSP_H

#include "te_add_s8.h"
#include "te_dsp.h"

void te_add_s8_dsp(const int8_t *in1, const int8_t *in2, int8_t *out, int32_t size,
                   int32_t in1_offset, int32_t in1_mult, int32_t in1_shift,
                   int32_t in2_offset, int32_t in2_mult, int32_t in2_shift, int32_t left_shift,
                   int32_t out_offset, int32_t out_mult, int32_t out_shift,
                   int32_t act_min, int32_t act_max);

/* Stage 2 of the fast path: with A = (b + b_offset) 2^21 and eb = -shift of b in [0, 31],
 *   eb >= 1: (SMMLAR(A, mb, rb) - [A < 0]) >> eb, which is RDBPOT(SRDHM(A / 2, mb), eb) + k 2^19
 *            for rb = 2^(eb - 1) + k 2^(19 + eb) (k = 0, or a_offset where that stays in
 *            range: te_add_s8_dsp.c);
 *   eb = 0:  SMMLAR(A, mb, rb) = SRDHM(A / 2, mb) + k 2^19 for rb = k 2^19. */
static inline int32_t te_add_dsp_stage_b(int32_t b, int32_t b_off21, int32_t mb, int32_t rb,
                                         int32_t eb)
{
    const int32_t A = (int32_t)((uint32_t)b_off21 + ((uint32_t)b << 21));
    if (eb == 0) {
        return te_smmlar(A, mb, rb);
    }
    return (te_smmlar(A, mb, rb) - (int32_t)((uint32_t)A >> 31)) >> eb;
}

/* Stage 3 of the fast path, before the clamp: (SMMLAR(X, mo, ro) - [X < 0]) >> eo, X = 2 S. */
static inline int32_t te_add_dsp_stage_out(int32_t X, int32_t mo, int32_t ro, int32_t eo)
{
    return (te_smmlar(X, mo, ro) - (int32_t)((uint32_t)X >> 31)) >> eo;
}

#endif /* TE_ADD_S8_DSP_H */
