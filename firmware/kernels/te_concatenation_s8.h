/*
 * te_concatenation_s8.h - int8 concatenation along one axis, portable C99
 * (TFLite CONCATENATION).
 *
 * Bit-exact with TensorFlow Lite Micro's reference_ops::Concatenation (a byte copy; the
 * inputs and the output share one quantization).
 */
#ifndef TE_CONCATENATION_S8_H
#define TE_CONCATENATION_S8_H

#include <stdint.h>

/*
 * Viewing every tensor as [outer, axis_dim * inner] (outer = product of the dims before
 * the axis, inner = product of the dims after it), output row k is input 0 row k,
 * then input 1 row k, ... :
 *   for k in [0, outer): for i in [0, num_inputs): copy copy_sizes[i] bytes.
 *
 * Arguments
 *   inputs      [num_inputs] pointers to the int8 inputs (row-major).
 *   copy_sizes  [num_inputs] input i's axis_dim * inner, in bytes (>= 1).
 *   outer       >= 1.
 *   output      int8, row-major; must not overlap any input.
 * Scratch: none.
 */
void te_concatenation_s8(const int8_t *const *inputs, const int32_t *copy_sizes,
                         int32_t num_inputs, int32_t outer, int8_t *output);

#endif /* TE_CONCATENATION_S8_H */
