/*
 * te_conv_2d_grad_bias_f32.h - gradient of an int8 CONV_2D, DEPTHWISE_CONV_2D or
 * FULLY_CONNECTED with respect to its int32 bias, float32, portable C99 (training backward).
 */
#ifndef TE_CONV_2D_GRAD_BIAS_F32_H
#define TE_CONV_2D_GRAD_BIAS_F32_H

#include <stdint.h>

/*
 * The three ops add the same bias: real bias = filter_scale[c] * input_scale * bias[c]
 * (TFLite's bias quantization), so with respect to the stored int32 values:
 *
 * grad_bias[c] = (filter_scale[c] * input_scale) * sum_{r = 0 .. rows-1} grad_out[r, c]
 *
 * Arguments
 *   grad_out      [rows, channels] float32: the output gradient (after the clamp's mask) with
 *                 every dimension but the last flattened (NHWC: rows = batches * out_h * out_w).
 *   filter_scale  [channels] float32 per-channel weight scales; input_scale > 0.
 *   grad_bias     [channels] float32, overwritten.
 * Order of summation: rows in increasing order, then one multiplication.
 * Preconditions: rows, channels >= 1.
 * Scratch: none.
 */
void te_conv_2d_grad_bias_f32(const float *grad_out, int32_t rows, int32_t channels,
                              const float *filter_scale, float input_scale, float *grad_bias);

#endif /* TE_CONV_2D_GRAD_BIAS_F32_H */
