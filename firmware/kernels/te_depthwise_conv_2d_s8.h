/*
 * te_depthwise_conv_2d_s8.h - int8 depthwise 2-D convolution, portable C99
 * (TFLite DEPTHWISE_CONV_2D).
 *
 * Bit-exact with TensorFlow Lite Micro's reference_integer_ops::DepthwiseConvPerChannel.
 */
#ifndef TE_DEPTHWISE_CONV_2D_S8_H
#define TE_DEPTHWISE_CONV_2D_S8_H

#include <stdint.h>

/*
 * With M = depth_multiplier and oc = ic * M + m (out_c = in_c * M):
 * output[b, oy, ox, oc] = clamp(te_mbqm(acc, out_mult[oc], out_shift[oc]) + output_offset,
 *                               act_min, act_max)
 * acc = acc_init[oc] + sum_{ky, kx} filter[0, ky, kx, oc] * X(b, iy, ix, ic)
 *   with iy = oy * stride_h - pad_top + ky * dil_h, ix = ox * stride_w - pad_left + kx * dil_w,
 *   X = input[b, iy, ix, ic] inside the image and pad_value outside it.
 *
 * Arguments
 *   input     [batches, in_h, in_w, in_c] int8, NHWC.
 *   filter    [1, k_h, k_w, in_c * depth_multiplier] int8 (TFLite's layout), zero point 0.
 *   acc_init  [out_c] int32: bias[oc] + input_offset * sum_{ky,kx} filter[0, ky, kx, oc]
 *             (input_offset = -input zero point; bias 0 when the model has none).
 *   output    [batches, out_h, out_w, in_c * depth_multiplier] int8.
 *   Overlap contract (TE_OVERLAP: window group=1): output pixels are computed one at a time
 *   in increasing (b, oy, ox) order; once any byte of output pixel q is written, the kernel
 *   reads only input bytes in the windows of output pixels >= q.  The output may thus
 *   start inside the input where tinyengine/overlap.py proves it safe; keep this order
 *   (or change this line) when changing the loops.
 *   pad_value the input zero point, in [-128, 127].
 *   out_mult, out_shift  [out_c] per-channel requantization (QuantizeMultiplier form).
 *   output_offset  output zero point in [-128, 127].
 *   act_min <= act_max, both in [-128, 127].
 * Preconditions (checked by the op's check()): all sizes >= 1, strides and dilations >= 1,
 *   pads >= 0, no int32 overflow of the accumulator.
 * Scratch: none.
 */
void te_depthwise_conv_2d_s8(const int8_t *input, int32_t batches, int32_t in_h,
                             int32_t in_w, int32_t in_c, const int8_t *filter,
                             int32_t depth_multiplier, int32_t k_h, int32_t k_w,
                             const int32_t *acc_init, int8_t *output, int32_t out_h,
                             int32_t out_w, int32_t stride_h, int32_t stride_w, int32_t dil_h,
                             int32_t dil_w, int32_t pad_top, int32_t pad_left,
                             int32_t pad_value, const int32_t *out_mult,
                             const int32_t *out_shift, int32_t output_offset, int32_t act_min,
                             int32_t act_max);

#endif /* TE_DEPTHWISE_CONV_2D_S8_H */
