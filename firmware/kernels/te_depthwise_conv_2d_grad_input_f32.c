/* te_depthwise_conv_2d_grad_input_f32.c - DEPTHWISE_CONV_2D input gradient.
 * Contract: te_depthwise_conv_2d_grad_input_f32.h. */
#include "te_depthwise_conv_2d_grad_input_f32.h"

#include <stddef.h>

#include "te_grad_common.h"
#include "te_window.h"

/* Both layouts: tap t = ky * k_w + kx of output channel oc is filter[t * out_c + oc]
 * (packed == 0) or, multiplier 1, te_depthwise_conv_2d_s8_dsp's filter_dsp: per group of 4
 * channels the taps with 4 bytes each, then each of the in_c % 4 remaining channels' taps. */
static inline void grad_input(const float *grad_out, int32_t batches, int32_t out_h,
                              int32_t out_w, const int8_t *filter, const float *filter_scale,
                              int32_t depth_multiplier, int32_t k_h, int32_t k_w,
                              float *grad_in, int32_t in_h, int32_t in_w, int32_t in_c,
                              int32_t stride_h, int32_t stride_w, int32_t pad_top,
                              int32_t pad_left, int packed)
{
    const int32_t out_c = in_c * depth_multiplier;
    const int32_t taps = k_h * k_w;
    const int32_t c4 = in_c & ~3;
    te_zero_f32(grad_in, batches * in_h * in_w * in_c);
    for (int32_t b = 0; b < batches; ++b) {
        float *gi_b = grad_in + (size_t)b * in_h * in_w * in_c;
        for (int32_t oy = 0; oy < out_h; ++oy) {
            const int32_t iy0 = oy * stride_h - pad_top;
            int32_t y0, y1; /* the window rows inside the image */
            te_window_span(oy, stride_h, pad_top, k_h, in_h, &y0, &y1);
            for (int32_t ox = 0; ox < out_w; ++ox, grad_out += out_c) {
                const int32_t ix0 = ox * stride_w - pad_left;
                int32_t x0, x1;
                te_window_span(ox, stride_w, pad_left, k_w, in_w, &x0, &x1);
                for (int32_t iy = y0; iy < y1; ++iy) { /* taps on the padding add nothing */
                    const int32_t ky = iy - iy0;
                    for (int32_t ix = x0; ix < x1; ++ix) {
                        const int32_t kx = ix - ix0;
                        const int32_t t = ky * k_w + kx;
                        float *gi = gi_b + ((size_t)iy * in_w + ix) * in_c;
                        if (packed) {
                            for (int32_t c = 0; c < in_c; ++c) {
                                const int8_t w = c < c4 ? filter[(c >> 2) * 4 * taps + t * 4 + (c & 3)]
                                                        : filter[c4 * taps + (c - c4) * taps + t];
                                if (grad_out[c] != 0.0f) {
                                    gi[c] += (grad_out[c] * filter_scale[c]) * (float)w;
                                }
                            }
                            continue;
                        }
                        const int8_t *w = filter + (size_t)t * out_c;
                        for (int32_t ic = 0, oc = 0; ic < in_c; ++ic) {
                            for (int32_t m = 0; m < depth_multiplier; ++m, ++oc) {
                                if (grad_out[oc] != 0.0f) {
                                    gi[ic] += (grad_out[oc] * filter_scale[oc]) * (float)w[oc];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

void te_depthwise_conv_2d_grad_input_f32(const float *grad_out, int32_t batches, int32_t out_h,
                                         int32_t out_w, const int8_t *filter,
                                         const float *filter_scale, int32_t depth_multiplier,
                                         int32_t k_h, int32_t k_w, float *grad_in, int32_t in_h,
                                         int32_t in_w, int32_t in_c, int32_t stride_h,
                                         int32_t stride_w, int32_t pad_top, int32_t pad_left)
{
    grad_input(grad_out, batches, out_h, out_w, filter, filter_scale, depth_multiplier, k_h,
               k_w, grad_in, in_h, in_w, in_c, stride_h, stride_w, pad_top, pad_left, 0);
}

void te_depthwise_conv_2d_grad_input_f32_packed(const float *grad_out, int32_t batches,
                                                int32_t out_h, int32_t out_w,
                                                const int8_t *filter, const float *filter_scale,
                                                int32_t k_h, int32_t k_w, float *grad_in,
                                                int32_t in_h, int32_t in_w, int32_t in_c,
                                                int32_t stride_h, int32_t stride_w,
                                                int32_t pad_top, int32_t pad_left)
{
    grad_input(grad_out, batches, out_h, out_w, filter, filter_scale, 1, k_h, k_w, grad_in,
               in_h, in_w, in_c, stride_h, stride_w, pad_top, pad_left, 1);
}
