/*
 * te_add_s8 - int8 ADD of two same-shape tensors (TFLite Micro reference AddFunc).
 *
 * Contract:
 *   in1, in2, out : int8, `size` elements each, any layout (elementwise).  out may be the
 *                   same buffer as in1 or in2 (each element is read before it is written).
 *   in1_offset, in2_offset : minus the input zero points, in [-127, 128].
 *   left_shift    : 20 for int8.
 *   in1_mult/in1_shift, in2_mult/in2_shift : QuantizeMultiplierSmallerThanOneExp of
 *                   scale_i / (2 * max(scale_1, scale_2)); shifts <= 0.
 *   out_mult/out_shift : QuantizeMultiplierSmallerThanOneExp of
 *                   2 * max(scale_1, scale_2) / (2^left_shift * out_scale); shift <= 0.
 *   out_offset    : output zero point.  act_min <= act_max, both in [-128, 127].
 * Preconditions (checked by tinyengine/ops/elementwise.py Add.check): all multipliers
 * in [2^30, 2^31) or 0, shifts in [-31, 0].  No scratch memory.
 * Overlap contract (TE_OVERLAP: elementwise): out[i] is written after in[i] is read, in
 *   increasing i, so out may start at (or before) an input of the same element size.
 */
#ifndef TE_ADD_S8_H
#define TE_ADD_S8_H

#include "te_common.h"

void te_add_s8(const int8_t *in1, const int8_t *in2, int8_t *out, int32_t size,
               int32_t in1_offset, int32_t in1_mult, int32_t in1_shift,
               int32_t in2_offset, int32_t in2_mult, int32_t in2_shift, int32_t left_shift,
               int32_t out_offset, int32_t out_mult, int32_t out_shift,
               int32_t act_min, int32_t act_max);

/* One output element: shared by te_add_s8 and te_add_bcast_s8. */
static inline int8_t te_add_elem_s8(int32_t a, int32_t b, int32_t in1_offset, int32_t in1_mult,
                                    int32_t in1_shift, int32_t in2_offset, int32_t in2_mult,
                                    int32_t in2_shift, int32_t left_shift, int32_t out_offset,
                                    int32_t out_mult, int32_t out_shift, int32_t act_min,
                                    int32_t act_max)
{
    const int32_t sa = te_mbqm_smaller_than_one((a + in1_offset) * (1 << left_shift), in1_mult, in1_shift);
    const int32_t sb = te_mbqm_smaller_than_one((b + in2_offset) * (1 << left_shift), in2_mult, in2_shift);
    const int32_t raw = te_mbqm_smaller_than_one((int32_t)((uint32_t)sa + (uint32_t)sb), out_mult, out_shift)
                        + out_offset;
    return (int8_t)te_clamp_i32(raw, act_min, act_max);
}

#endif /* TE_ADD_S8_H */
