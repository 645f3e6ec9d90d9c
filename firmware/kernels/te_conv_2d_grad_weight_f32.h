/*
 * te_conv_2d_grad_weight_f32.h - gradient of an int8 CONV_2D with respect to its int8
 * weights, float32, portable C99 (training backward).
 */
#ifndef TE_CONV_2D_GRAD_WEIGHT_F32_H
#define TE_CONV_2D_GRAD_WEIGHT_F32_H

#include <stdint.h>

/*
 * The forward (te_conv_2d_s8.h) read as real numbers: y = conv(x, w) + b with
 * x = input_scale * (input - input_zero_point) and w = filter_scale[oc] * filter.  The
 * gradient is taken with respect to the stored int8 values themselves (dL/dfilter =
 * filter_scale * dL/dw, the quantized graph's gradient of "On-Device Training Under 256KB
 * Memory"; te_sgd_update_s8 applies the QAS factor filter_scale^-2).  For the selected
 * output channels oc = channels[j] (j = 0 .. n_channels-1):
 *
 * grad_filter[j, ky, kx, ic] = (filter_scale[oc] * input_scale) *
 *     sum over (b, oy, ox) of grad_out[b, oy, ox, oc] * (input[b, iy, ix, ic] - input_zero_point)
 *   with iy = oy * stride_h - pad_top + ky, ix = ox * stride_w - pad_left + kx; taps on the
 *   padding contribute nothing.
 *
 * Arguments
 *   grad_out      [batches, out_h, out_w, out_c] float32, NHWC (after the clamp's mask).
 *   input         [batches, in_h, in_w, in_c] int8, NHWC: the forward's input as saved.
 *   input_zero_point in [-128, 127]; input_scale > 0.
 *   filter_scale  [out_c] float32 per-channel weight scales.
 *   grad_filter   [n_channels, k_h, k_w, in_c] float32 (OHWI rows of the selected channels),
 *                 overwritten.
 *   channels      [n_channels] distinct output channels in [0, out_c), or NULL for all
 *                 (then n_channels == out_c and row j is channel j).
 * Order of summation: per selected channel, output pixels in increasing (b, oy, ox) add
 *   g * (x - zp) to the row (zero gradients skipped); the row is then scaled once.
 * Preconditions: all sizes, k_h, k_w, strides >= 1, pad_top, pad_left >= 0.
 * Scratch: none.
 */
void te_conv_2d_grad_weight_f32(const float *grad_out, int32_t batches, int32_t out_h,
                                int32_t out_w, int32_t out_c, const int8_t *input,
                                int32_t in_h, int32_t in_w, int32_t in_c,
                                int32_t input_zero_point, float input_scale,
                                const float *filter_scale, float *grad_filter, int32_t k_h,
                                int32_t k_w, const int32_t *channels, int32_t n_channels,
                                int32_t stride_h, int32_t stride_w, int32_t pad_top,
                                int32_t pad_left);

#endif /* TE_CONV_2D_GRAD_WEIGHT_F32_H */
