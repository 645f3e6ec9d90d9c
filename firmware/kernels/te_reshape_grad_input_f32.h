/*
 * te_reshape_grad_input_f32.h - gradient of a RESHAPE with respect to its input, float32,
 * portable C99 (training backward).
 */
#ifndef TE_RESHAPE_GRAD_INPUT_F32_H
#define TE_RESHAPE_GRAD_INPUT_F32_H

#include <stdint.h>

/*
 * A reshape keeps the row-major order, so grad_in[i] = grad_out[i] for i in [0, n): a copy,
 * for when the planner places the two gradients apart (where it can, it aliases them and
 * emits no call).
 *
 * Arguments
 *   grad_out, grad_in  [n] float32; equal pointers are allowed (nothing to do), otherwise
 *                      they must not overlap.
 * Scratch: none.
 */
void te_reshape_grad_input_f32(const float *grad_out, float *grad_in, int32_t n);

#endif /* TE_RESHAPE_GRAD_INPUT_F32_H */
