/*
 * te_pad_grad_input_f32.h - gradient of an int8 PAD with respect to its input, float32,
 * portable C99 (training backward).
 */
#ifndef TE_PAD_GRAD_INPUT_F32_H
#define TE_PAD_GRAD_INPUT_F32_H

#include <stdint.h>

/*
 * The forward (te_pad_s8.h) copies the input into the middle of the output; the padding is a
 * constant (its gradient is dropped).  So the input gradient is the middle of the output
 * gradient:
 *
 * grad_in[i0..i4] = grad_out[i0 + pad_before[0], ..., i4 + pad_before[4]]
 *
 * Arguments
 *   grad_out   float32, row-major, shape out_dims[0..4].
 *   grad_in    float32, row-major, shape in_dims[0..4], overwritten; must not overlap grad_out.
 *   in_dims, out_dims, pad_before  [5] each, as for te_pad_s8 (lower ranks with leading 1s
 *              and 0s); out_dims[d] >= in_dims[d] + pad_before[d].
 * Scratch: none.
 */
void te_pad_grad_input_f32(const float *grad_out, float *grad_in, const int32_t *in_dims,
                           const int32_t *out_dims, const int32_t *pad_before);

#endif /* TE_PAD_GRAD_INPUT_F32_H */
