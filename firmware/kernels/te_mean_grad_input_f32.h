/*
 * te_mean_grad_input_f32.h - gradient of an int8 MEAN with respect to its input, float32,
 * portable C99 (training backward).
 */
#ifndef TE_MEAN_GRAD_INPUT_F32_H
#define TE_MEAN_GRAD_INPUT_F32_H

#include <stdint.h>

/*
 * The forward (te_mean_s8.h) read as real numbers: y = the mean of `count` inputs (the
 * scales of input and output do not enter: gradients are of real values).  With the same
 * two strided index spaces over the input as the forward (keep_*: the kept dimensions in
 * output order, with their input element strides; red_*: the reduced dimensions):
 *
 * grad_in[keep offset + red offset] = grad_out[o] / (float)count
 *   for the o-th kept index (o = 0 .. prod(keep_shape)-1) and every reduced index.
 *
 * Arguments
 *   grad_out  [prod(keep_shape)] float32.
 *   grad_in   the input's shape, float32; every element is written once (the two index
 *             spaces of a reduction tile the input); must not overlap grad_out.
 *   1 <= keep_ndim, red_ndim <= 6 (a missing space is given as {1}, {0}); count =
 *   prod(red_shape) >= 1.
 * Scratch: none.
 */
void te_mean_grad_input_f32(const float *grad_out, float *grad_in, int32_t keep_ndim,
                            const int32_t *keep_shape, const int32_t *keep_strides,
                            int32_t red_ndim, const int32_t *red_shape,
                            const int32_t *red_strides, int32_t count);

#endif /* TE_MEAN_GRAD_INPUT_F32_H */
