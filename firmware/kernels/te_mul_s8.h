/*
 * te_mul_s8 - int8 MUL of two same-shape tensors (TFLite Micro reference MulElementwise).
 *
 * Contract:
 *   in1, in2, out : int8, `size` elements each, any layout (elementwise).  out may be the
 *                   same buffer as in1 or in2.
 *   in1_offset, in2_offset : minus the input zero points, in [-127, 128].
 *   out_mult/out_shift : QuantizeMultiplier of scale_1 * scale_2 / out_scale
 *                   (multiplier in [2^30, 2^31) or 0, shift in [-31, 30]; may exceed one).
 *   out_offset    : output zero point.  act_min <= act_max, both in [-128, 127].
 * No scratch memory.
 * Overlap contract (TE_OVERLAP: elementwise): out[i] is written after in[i] is read, in
 *   increasing i, so out may start at (or before) an input of the same element size.
 */
#ifndef TE_MUL_S8_H
#define TE_MUL_S8_H

#include "te_common.h"

void te_mul_s8(const int8_t *in1, const int8_t *in2, int8_t *out, int32_t size,
               int32_t in1_offset, int32_t in2_offset, int32_t out_offset,
               int32_t out_mult, int32_t out_shift, int32_t act_min, int32_t act_max);

/* One output element: shared by te_mul_s8 and te_mul_bcast_s8. */
static inline int8_t te_mul_elem_s8(int32_t a, int32_t b, int32_t in1_offset, int32_t in2_offset,
                                    int32_t out_offset, int32_t out_mult, int32_t out_shift,
                                    int32_t act_min, int32_t act_max)
{
    const int32_t raw = te_mbqm((a + in1_offset) * (b + in2_offset), out_mult, out_shift) + out_offset;
    return (int8_t)te_clamp_i32(raw, act_min, act_max);
}

#endif /* TE_MUL_S8_H */
