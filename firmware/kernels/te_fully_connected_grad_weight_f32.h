/*
 * te_fully_connected_grad_weight_f32.h - gradient of an int8 FULLY_CONNECTED with respect to
 * its int8 weights, float32, portable C99 (training backward).
 */
#ifndef TE_FULLY_CONNECTED_GRAD_WEIGHT_F32_H
#define TE_FULLY_CONNECTED_GRAD_WEIGHT_F32_H

#include <stdint.h>

/*
 * The forward read as real numbers, x = input_scale * (input - input_zero_point),
 * w = weight_scale[o] * weights; gradient with respect to the stored int8 values (as
 * te_conv_2d_grad_weight_f32.h).  For the selected outputs o = channels[j]:
 *
 * grad_weights[j, i] = (weight_scale[o] * input_scale) *
 *     sum_{b = 0 .. batches-1} grad_out[b, o] * (input[b, i] - input_zero_point)
 *
 * Arguments
 *   grad_out      [batches, out_features] float32 (after the clamp's mask).
 *   input         [batches, in_features] int8: the forward's input as saved.
 *   input_zero_point in [-128, 127]; input_scale > 0.
 *   weight_scale  [out_features] float32.
 *   grad_weights  [n_channels, in_features] float32, overwritten.
 *   channels      [n_channels] distinct outputs in [0, out_features), or NULL for all.
 * Order of summation: per selected output, batches in increasing order add g * (x - zp)
 *   (zero gradients skipped); the row is then scaled once.
 * Preconditions: batches, in_features, out_features >= 1.
 * Scratch: none.
 */
void te_fully_connected_grad_weight_f32(const float *grad_out, const int8_t *input,
                                        int32_t input_zero_point, float input_scale,
                                        const float *weight_scale, float *grad_weights,
                                        int32_t batches, int32_t in_features,
                                        int32_t out_features, const int32_t *channels,
                                        int32_t n_channels);

#endif /* TE_FULLY_CONNECTED_GRAD_WEIGHT_F32_H */
