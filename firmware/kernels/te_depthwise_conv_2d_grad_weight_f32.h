/*
 * te_depthwise_conv_2d_grad_weight_f32.h - gradient of an int8 DEPTHWISE_CONV_2D with respect
 * to its int8 weights, float32, portable C99 (training backward).
 */
#ifndef TE_DEPTHWISE_CONV_2D_GRAD_WEIGHT_F32_H
#define TE_DEPTHWISE_CONV_2D_GRAD_WEIGHT_F32_H

#include <stdint.h>

/*
 * The forward (te_depthwise_conv_2d_s8.h) read as real numbers, M = depth_multiplier,
 * x = input_scale * (input - input_zero_point), w = filter_scale[oc] * filter; gradient with
 * respect to the stored int8 values (as te_conv_2d_grad_weight_f32.h).  For the selected
 * channels oc = channels[j] (j = 0 .. n_channels-1), ic = oc / M:
 *
 * grad_filter[ky, kx, j] = (filter_scale[oc] * input_scale) *
 *     sum over (b, oy, ox) of grad_out[b, oy, ox, oc] * (input[b, iy, ix, ic] - input_zero_point)
 *   with iy = oy * stride_h - pad_top + ky, ix = ox * stride_w - pad_left + kx; taps on the
 *   padding contribute nothing.
 *
 * Arguments
 *   grad_out      [batches, out_h, out_w, in_c * M] float32, NHWC (after the clamp's mask).
 *   input         [batches, in_h, in_w, in_c] int8: the forward's input as saved.
 *   input_zero_point in [-128, 127]; input_scale > 0.
 *   filter_scale  [in_c * M] float32 per-channel weight scales.
 *   grad_filter   [k_h, k_w, n_channels] float32 (the forward's [1, k_h, k_w, C] layout with
 *                 only the selected channels), overwritten.
 *   channels      [n_channels] distinct channels in [0, in_c * M), or NULL for all.
 * Order of summation: grad_filter is zeroed, then output pixels in increasing (b, oy, ox),
 *   taps (ky, kx), selected channels j add g * (x - zp) (zero gradients skipped); each entry
 *   is then scaled once.
 * Preconditions: all sizes, M, k_h, k_w, strides >= 1, pad_top, pad_left >= 0.
 * Scratch: none.
 */
void te_depthwise_conv_2d_grad_weight_f32(const float *grad_out, int32_t batches,
                                          int32_t out_h, int32_t out_w, const int8_t *input,
                                          int32_t in_h, int32_t in_w, int32_t in_c,
                                          int32_t input_zero_point, float input_scale,
                                          const float *filter_scale, int32_t depth_multiplier,
                                          float *grad_filter, int32_t k_h, int32_t k_w,
                                          const int32_t *channels, int32_t n_channels,
                                          int32_t stride_h, int32_t stride_w, int32_t pad_top,
                                          int32_t pad_left);

#endif /* TE_DEPTHWISE_CONV_2D_GRAD_WEIGHT_F32_H */
