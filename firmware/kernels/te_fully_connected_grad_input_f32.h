/*
 * te_fully_connected_grad_input_f32.h - gradient of an int8 FULLY_CONNECTED with respect to
 * its input, float32, portable C99 (training backward).
 */
#ifndef TE_FULLY_CONNECTED_GRAD_INPUT_F32_H
#define TE_FULLY_CONNECTED_GRAD_INPUT_F32_H

#include <stdint.h>

/*
 * The forward (te_fully_connected_per_channel_s8.h) read as real numbers: y = x w^T + b with
 * w[o, i] = weight_scale[o] * weights[o, i].  Given grad_out = dL/dy (after the clamp's mask):
 *
 * grad_in[b, i] = sum_{o = 0 .. out_features-1} (grad_out[b, o] * weight_scale[o]) * weights[o, i]
 *
 * Arguments
 *   grad_out      [batches, out_features] float32.
 *   weights       [out_features, in_features] int8, as stored for the forward.
 *   weight_scale  [out_features] float32 (per-tensor: one value repeated).
 *   grad_in       [batches, in_features] float32, overwritten; must not overlap grad_out.
 * Order of summation: grad_in is zeroed, then outputs o in increasing order add their
 *   products (zero output gradients skipped).
 * Preconditions: batches, in_features, out_features >= 1.
 * Scratch: none.
 */
void te_fully_connected_grad_input_f32(const float *grad_out, const int8_t *weights,
                                       const float *weight_scale, float *grad_in,
                                       int32_t batches, int32_t in_features,
                                       int32_t out_features);

#endif /* TE_FULLY_CONNECTED_GRAD_INPUT_F32_H */
