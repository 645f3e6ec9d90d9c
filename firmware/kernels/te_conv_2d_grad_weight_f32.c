/* te_conv_2d_grad_weight_f32.c - CONV_2D weight gradient.  Contract: te_conv_2d_grad_weight_f32.h. */
#include "te_conv_2d_grad_weight_f32.h"

#include <stddef.h>

#include "te_grad_common.h"
#include "te_window.h"

void te_conv_2d_grad_weight_f32(const float *grad_out, int32_t batches, int32_t out_h,
                                int32_t out_w, int32_t out_c, const int8_t *input,
                                int32_t in_h, int32_t in_w, int32_t in_c,
                                int32_t input_zero_point, float input_scale,
                                const float *filter_scale, float *grad_filter, int32_t k_h,
                                int32_t k_w, const int32_t *channels, int32_t n_channels,
                                int32_t stride_h, int32_t stride_w, int32_t pad_top,
                                int32_t pad_left)
{
    const int32_t row_len = k_h * k_w * in_c;
    for (int32_t j = 0; j < n_channels; ++j) {
        const int32_t oc = te_selected(channels, j);
        float *row = grad_filter + (size_t)j * row_len;
        te_zero_f32(row, row_len);
        const float *g_oc = grad_out + oc;
        for (int32_t b = 0; b < batches; ++b) {
            const int8_t *in_b = input + (size_t)b * in_h * in_w * in_c;
            for (int32_t oy = 0; oy < out_h; ++oy) {
                const int32_t iy0 = oy * stride_h - pad_top;
                int32_t y0, y1; /* the window rows inside the image */
                te_window_span(oy, stride_h, pad_top, k_h, in_h, &y0, &y1);
                for (int32_t ox = 0; ox < out_w; ++ox, g_oc += out_c) {
                    const float g = *g_oc;
                    if (g == 0.0f) {
                        continue;
                    }
                    const int32_t ix0 = ox * stride_w - pad_left;
                    int32_t x0, x1;
                    te_window_span(ox, stride_w, pad_left, k_w, in_w, &x0, &x1);
                    for (int32_t iy = y0; iy < y1; ++iy) { /* taps on the padding add nothing */
                        const int32_t ky = iy - iy0;
                        for (int32_t ix = x0; ix < x1; ++ix) {
                            const int32_t kx = ix - ix0;
                            const int8_t *x = in_b + ((size_t)iy * in_w + ix) * in_c;
                            float *r = row + ((size_t)ky * k_w + kx) * in_c;
                            for (int32_t ic = 0; ic < in_c; ++ic) {
                                r[ic] += g * (float)(x[ic] - input_zero_point);
                            }
                        }
                    }
                }
            }
        }
        const float s = filter_scale[oc] * input_scale;
        for (int32_t i = 0; i < row_len; ++i) {
            row[i] *= s;
        }
    }
}
