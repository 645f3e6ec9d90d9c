/* te_depthwise_conv_2d_grad_weight_f32.c - DEPTHWISE_CONV_2D weight gradient.
 * Contract: te_depthwise_conv_2d_grad_weight_f32.h. */
#include "te_depthwise_conv_2d_grad_weight_f32.h"

#include <stddef.h>

#include "te_grad_common.h"
#include "te_window.h"

void te_depthwise_conv_2d_grad_weight_f32(const float *grad_out, int32_t batches,
                                          int32_t out_h, int32_t out_w, const int8_t *input,
                                          int32_t in_h, int32_t in_w, int32_t in_c,
                                          int32_t input_zero_point, float input_scale,
                                          const float *filter_scale, int32_t depth_multiplier,
                                          float *grad_filter, int32_t k_h, int32_t k_w,
                                          const int32_t *channels, int32_t n_channels,
                                          int32_t stride_h, int32_t stride_w, int32_t pad_top,
                                          int32_t pad_left)
{
    const int32_t out_c = in_c * depth_multiplier;
    te_zero_f32(grad_filter, k_h * k_w * n_channels);
    for (int32_t b = 0; b < batches; ++b) {
        const int8_t *in_b = input + (size_t)b * in_h * in_w * in_c;
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
                        const int8_t *x = in_b + ((size_t)iy * in_w + ix) * in_c;
                        float *gf = grad_filter + ((size_t)ky * k_w + kx) * n_channels;
                        for (int32_t j = 0; j < n_channels; ++j) {
                            const int32_t oc = te_selected(channels, j);
                            if (grad_out[oc] != 0.0f) {
                                gf[j] += grad_out[oc]
                                       * (float)(x[oc / depth_multiplier] - input_zero_point);
                            }
                        }
                    }
                }
            }
        }
    }
    for (int32_t t = 0; t < k_h * k_w; ++t, grad_filter += n_channels) {
        for (int32_t j = 0; j < n_channels; ++j) {
            grad_filter[j] *= filter_scale[te_selected(channels, j)] * input_scale;
        }
    }
}
