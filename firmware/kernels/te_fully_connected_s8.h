/*
 * te_fully_connected_s8.h - int8 fully connected layer with per-tensor requantization,
 * portable C99 (TFLite FULLY_CONNECTED, per-tensor weights).
 *
 * Bit-exact with TensorFlow Lite Micro's reference_integer_ops::FullyConnected.
 */
#ifndef TE_FULLY_CONNECTED_S8_H
#define TE_FULLY_CONNECTED_S8_H

#include <stdint.h>

/*
 * output[b, o] = clamp(te_mbqm(acc_init[o] + sum_i weights[o, i] * input[b, i],
 *                              out_mult, out_shift) + output_offset, act_min, act_max)
 *
 * Arguments
 *   input     [batches, in_features] int8 (any input rank, flattened).
 *   weights   [out_features, in_features] int8, row-major, zero point 0.
 *   acc_init  [out_features] int32: bias[o] + input_offset * sum_i weights[o, i], folded at
 *             compile time (input_offset = -input zero point; bias 0 when absent).
 *   output    [batches, out_features] int8.  Must not overlap input.
 *   out_mult, out_shift  one requantization multiplier (QuantizeMultiplier form).
 *   output_offset  output zero point in [-128, 127];  act_min <= act_max in [-128, 127].
 * Preconditions (checked by the op's check()): sizes >= 1, no int32 accumulator overflow.
 * Scratch: none.
 */
void te_fully_connected_s8(const int8_t *input, const int8_t *weights,
                           const int32_t *acc_init, int8_t *output, int32_t batches,
                           int32_t in_features, int32_t out_features, int32_t out_mult,
                           int32_t out_shift, int32_t output_offset, int32_t act_min,
                           int32_t act_max);

#endif /* TE_FULLY_CONNECTED_S8_H */
