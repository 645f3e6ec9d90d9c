/*
 * te_transpose_s8.h - int8 transpose of a tensor of up to 6 dimensions, portable C99
 * (TFLite TRANSPOSE).
 *
 * Bit-exact with TensorFlow Lite Micro's reference_ops::Transpose (a byte permutation).
 */
#ifndef TE_TRANSPOSE_S8_H
#define TE_TRANSPOSE_S8_H

#include <stdint.h>

/*
 * output[o0, ..., o5] = input[o0 * in_strides[0] + ... + o5 * in_strides[5]]
 *
 * Arguments
 *   input       int8, row-major.
 *   output      int8, row-major, shape out_dims[0..5].  Must not overlap input.
 *   out_dims    [6] output shape, lower ranks given with leading 1s.
 *   in_strides  [6] for each output axis j, the input's element stride along axis
 *               perm[j] (leading entries 0).
 * Scratch: none.
 */
void te_transpose_s8(const int8_t *input, int8_t *output, const int32_t *out_dims,
                     const int32_t *in_strides);

#endif /* TE_TRANSPOSE_S8_H */
