/*
 * te_mean_s8 - int8 MEAN over any set of axes (TFLite Micro reference QuantizedMeanOrSum).
 *
 * The reduction is described at compile time (tinyengine/ops/reduce.py) by two strided
 * index spaces over the input:
 *   keep_shape[keep_ndim], keep_strides[keep_ndim] : the kept dimensions in output order
 *                   (outermost first) with their input element strides; out is dense in
 *                   this order, prod(keep_shape) int8 elements.
 *   red_shape[red_ndim], red_strides[red_ndim]     : the reduced dimensions with their
 *                   input element strides; prod(red_shape) == count.
 *   1 <= keep_ndim, red_ndim <= TE_MEAN_MAX_DIMS (a missing space is given as {1}, {0}).
 *   count         : number of input elements averaged into one output (>= 1).
 *   in_zp, out_zp : zero points.
 *   mult, shift   : QuantizeMultiplier(in_scale / out_scale) with 1/count folded in
 *                   (multiplier in [0, 2^31), shift in [-63, 30]).
 *   Sums are int32 (wrapping like TFLM's int32 accumulator).  out must not alias in.
 * No scratch memory.
 */
#ifndef TE_MEAN_S8_H
#define TE_MEAN_S8_H

#include "te_common.h"

#define TE_MEAN_MAX_DIMS 6

void te_mean_s8(const int8_t *in, int8_t *out, int32_t keep_ndim, const int32_t *keep_shape,
                const int32_t *keep_strides, int32_t red_ndim, const int32_t *red_shape,
                const int32_t *red_strides, int32_t count, int32_t in_zp, int32_t out_zp,
                int32_t mult, int32_t shift);

#endif /* TE_MEAN_S8_H */
