/*
 * te_mul_bcast_s8 - int8 MUL with broadcasting (TFLite Micro reference BroadcastMul6DSlow).
 *
 * Contract:
 *   shape[6], in1_strides[6], in2_strides[6] : as te_add_bcast_s8 (te_add_bcast_s8.h):
 *                   dense output of shape[0..5], element strides per input, 0 on broadcast
 *                   dimensions.
 *   other arguments as te_mul_s8 (see te_mul_s8.h).
 *   out may be the same buffer as an input that is not broadcast.
 * No scratch memory.
 */
#ifndef TE_MUL_BCAST_S8_H
#define TE_MUL_BCAST_S8_H

#include "te_mul_s8.h"

void te_mul_bcast_s8(const int8_t *in1, const int8_t *in2, int8_t *out, const int32_t *shape,
                     const int32_t *in1_strides, const int32_t *in2_strides,
                     int32_t in1_offset, int32_t in2_offset, int32_t out_offset,
                     int32_t out_mult, int32_t out_shift, int32_t act_min, int32_t act_max);

#endif /* TE_MUL_BCAST_S8_H */
