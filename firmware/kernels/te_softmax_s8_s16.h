/*
 * te_softmax_s8_s16 - int8 -> int16 SOFTMAX over the innermost dimension
 * (TFLite Micro reference_ops::Softmax<int8_t, int16_t>).
 *
 * Contract: as te_softmax_s8 (te_softmax_s8.h) except out is int16 [outer, depth] with
 * scale 1/65536 and zero point -32768 (required by TFLite Micro); out must not alias in.
 * No scratch memory.
 */
#ifndef TE_SOFTMAX_S8_S16_H
#define TE_SOFTMAX_S8_S16_H

#include "te_softmax_s8.h"

void te_softmax_s8_s16(const int8_t *in, int16_t *out, int32_t outer, int32_t depth,
                       const int32_t *exp_lut);

#endif /* TE_SOFTMAX_S8_S16_H */
