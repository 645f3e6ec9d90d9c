/*
 * te_log_softmax_s8 - int8 LOG_SOFTMAX over the innermost dimension
 * (TFLite Micro reference LogSoftmaxQuantized, gemmlowp fixed point).
 *
 * Contract:
 *   in, out   : int8, [outer, depth] row-major.  out may be the same buffer as in.
 *   exp_lut[256] : as te_softmax_s8 with beta = 1 (index = row max - x).
 *   in_mult, in_shift : PreprocessSoftmaxScaling(1, input_scale, 5) (shift >= 0).
 *   rev_div, rev_shift : reverse scaling divisor and its shift (shift <= 0), from
 *               PreprocessLogSoftmaxScalingExp.
 *   diff_min  : -CalculateInputRadius(5, in_shift) (negative).
 *   Output quantization is scale 16/256, zero point 127 (required by TFLite Micro).
 * No scratch memory.
 */
#ifndef TE_LOG_SOFTMAX_S8_H
#define TE_LOG_SOFTMAX_S8_H

#include "te_fixedpoint.h"

void te_log_softmax_s8(const int8_t *in, int8_t *out, int32_t outer, int32_t depth,
                       const int32_t *exp_lut, int32_t in_mult, int32_t in_shift,
                       int32_t rev_div, int32_t rev_shift, int32_t diff_min);

#endif /* TE_LOG_SOFTMAX_S8_H */
