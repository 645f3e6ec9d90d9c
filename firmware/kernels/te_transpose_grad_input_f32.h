/*
 * te_transpose_grad_input_f32.h - gradient of an int8 TRANSPOSE with respect to its input,
 * float32, portable C99 (training backward).
 */
#ifndef TE_TRANSPOSE_GRAD_INPUT_F32_H
#define TE_TRANSPOSE_GRAD_INPUT_F32_H

#include <stdint.h>

/*
 * The forward (te_transpose_s8) moves input axis perm[d] to output axis d; its gradient moves
 * each value back:
 *
 * grad_in[i0..i4] = grad_out[j0..j4] with j_d = i_perm[d]
 *
 * Arguments
 *   grad_out   float32, row-major, shape out_dims[d] = in_dims[perm[d]].
 *   grad_in    float32, row-major, shape in_dims[0..4], overwritten; must not overlap grad_out.
 *   in_dims    [5] the input's shape (lower ranks with leading 1s).
 *   perm       [5] a permutation of 0..4 (lower ranks: leading 0, 1, ... then the op's
 *              permutation shifted by the number of added axes).
 * Scratch: none.
 */
void te_transpose_grad_input_f32(const float *grad_out, float *grad_in, const int32_t *in_dims,
                                 const int32_t *perm);

#endif /* TE_TRANSPOSE_GRAD_INPUT_F32_H */
