/*
 * te_add_bcast_s8 - int8 ADD with broadcasting (TFLite Micro reference AddFunc).
 *
 * Contract:
 *   shape[6]      : the output's iteration space, outermost first (compressed and padded
 *                   with leading 1s at compile time); out is dense in this order,
 *                   shape[0]*...*shape[5] int8 elements.
 *   in1_strides[6], in2_strides[6] : element strides of each input along those 6 dims,
 *                   0 where the input is broadcast.
 *   other arguments as te_add_s8 (see te_add_s8.h).
 *   out may be the same buffer as in1 only if in1 is not broadcast (its strides are the
 *   dense strides of shape); likewise for in2.
 * No scratch memory.
 */
#ifndef TE_ADD_BCAST_S8_H
#define TE_ADD_BCAST_S8_H

#include "te_add_s8.h"

void te_add_bcast_s8(const int8_t *in1, const int8_t *in2, int8_t *out, const int32_t *shape,
                     const int32_t *in1_strides, const int32_t *in2_strides,
                     int32_t in1_offset, int32_t in1_mult, int32_t in1_shift,
                     int32_t in2_offset, int32_t in2_mult, int32_t in2_shift, int32_t left_shift,
                     int32_t out_offset, int32_t out_mult, int32_t out_shift,
                     int32_t act_min, int32_t act_max);

#endif /* TE_ADD_BCAST_S8_H */
