/*
 * te_depthwise_conv_2d_grad_input_f32.h - gradient of an int8 DEPTHWISE_CONV_2D with
 * respect to its input, float32, portable C99 (training backward).
 */
#ifndef TE_DEPTHWISE_CONV_2D_GRAD_INPUT_F32_H
#define TE_DEPTHWISE_CONV_2D_GRAD_INPUT_F32_H

#include <stdint.h>

/*
 * The forward (te_depthwise_conv_2d_s8.h) read as real numbers, M = depth_multiplier,
 * oc = ic * M + m, weights w[ky, kx, oc] = filter_scale[oc] * filter[0, ky, kx, oc],
 * dilation 1.  Given grad_out = dL/dy (after the clamp's mask):
 *
 * grad_in[b, iy, ix, ic] = sum over (oy, ox, ky, kx, m) with iy = oy * stride_h - pad_top + ky,
 *                          ix = ox * stride_w - pad_left + kx of
 *                          (grad_out[b, oy, ox, oc] * filter_scale[oc]) * filter[0, ky, kx, oc]
 *
 * Taps on the padding contribute nothing; input pixels no window reads get 0.
 *
 * Arguments
 *   grad_out      [batches, out_h, out_w, in_c * depth_multiplier] float32, NHWC.
 *   filter        [1, k_h, k_w, in_c * depth_multiplier] int8, as stored for the forward.
 *   filter_scale  [in_c * depth_multiplier] float32 per-channel weight scales.
 *   grad_in       [batches, in_h, in_w, in_c] float32, overwritten; must not overlap grad_out.
 *   pad_top, pad_left >= 0: the forward's padding (SAME, VALID or explicit).
 * Order of summation: grad_in is zeroed, then output pixels in increasing (b, oy, ox), taps
 *   (ky, kx), output channels oc = ic * M + m in increasing order add their products (zero
 *   output gradients skipped).
 * Preconditions: all sizes, depth_multiplier, k_h, k_w, strides >= 1.
 * Scratch: none.
 */
void te_depthwise_conv_2d_grad_input_f32(const float *grad_out, int32_t batches, int32_t out_h,
                                         int32_t out_w, const int8_t *filter,
                                         const float *filter_scale, int32_t depth_multiplier,
                                         int32_t k_h, int32_t k_w, float *grad_in, int32_t in_h,
                                         int32_t in_w, int32_t in_c, int32_t stride_h,
                                         int32_t stride_w, int32_t pad_top, int32_t pad_left);

/*
 * The same for depth_multiplier 1 (same order of summation, the same bits) with filter in
 * te_depthwise_conv_2d_s8_dsp's layout (tinyengine's pack_filter_dsp: per group of 4 channels
 * the k_h * k_w taps with 4 bytes each, then each of the in_c % 4 remaining channels' taps):
 * the backward of a layer whose frozen weights the forward's DSP kernel reads, with no
 * second copy of them.
 */
void te_depthwise_conv_2d_grad_input_f32_packed(const float *grad_out, int32_t batches,
                                                int32_t out_h, int32_t out_w,
                                                const int8_t *filter, const float *filter_scale,
                                                int32_t k_h, int32_t k_w, float *grad_in,
                                                int32_t in_h, int32_t in_w, int32_t in_c,
                                                int32_t stride_h, int32_t stride_w,
                                                int32_t pad_top, int32_t pad_left);

#endif /* TE_DEPTHWISE_CONV_2D_GRAD_INPUT_F32_H */
