/*
 * te_pad_s8.h - int8 constant padding of a tensor of up to 5 dimensions, portable C99
 * (TFLite PAD / PADV2).
 *
 * Bit-exact with TensorFlow Lite Micro's reference_ops::Pad (a byte copy).
 */
#ifndef TE_PAD_S8_H
#define TE_PAD_S8_H

#include <stdint.h>

/*
 * output[o0..o4] = input[o0 - pad_before[0], ..., o4 - pad_before[4]] where every index
 * lies inside in_dims, and pad_value elsewhere.
 *
 * Arguments
 *   input       int8, row-major, shape in_dims[0..4].
 *   output      int8, row-major, shape out_dims[0..4].  Must not overlap input.
 *   in_dims, out_dims, pad_before  [5] each; lower-rank tensors are given with leading
 *               1s (dims) and 0s (pads).  out_dims[d] >= in_dims[d] + pad_before[d].
 *   pad_value   the padding byte (PAD: the output zero point; PADV2: constant_values).
 * Scratch: none.
 */
void te_pad_s8(const int8_t *input, int8_t *output, const int32_t *in_dims,
               const int32_t *out_dims, const int32_t *pad_before, int32_t pad_value);

#endif /* TE_PAD_S8_H */
