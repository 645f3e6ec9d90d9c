/*
 * te_fully_connected_per_channel_s8.h - int8 fully connected layer with per-output-channel
 * requantization, portable C99 (TFLite FULLY_CONNECTED, per-channel weights).
 *
 * Bit-exact with TensorFlow Lite Micro's reference_integer_ops::FullyConnectedPerChannel.
 */
#ifndef TE_FULLY_CONNECTED_PER_CHANNEL_S8_H
#define TE_FULLY_CONNECTED_PER_CHANNEL_S8_H

#include <stdint.h>

/*
 * output[b, o] = clamp(te_mbqm(acc_init[o] + sum_i weights[o, i] * input[b, i],
 *                              out_mult[o], out_shift[o]) + output_offset, act_min, act_max)
 *
 * Arguments as te_fully_connected_s8 (te_fully_connected_s8.h), except
 *   out_mult, out_shift  [out_features] per-output requantization (QuantizeMultiplier form).
 * Scratch: none.
 */
void te_fully_connected_per_channel_s8(const int8_t *input, const int8_t *weights,
                                       const int32_t *acc_init, int8_t *output,
                                       int32_t batches, int32_t in_features,
                                       int32_t out_features, const int32_t *out_mult,
                                       const int32_t *out_shift, int32_t output_offset,
                                       int32_t act_min, int32_t act_max);

#endif /* TE_FULLY_CONNECTED_PER_CHANNEL_S8_H */
