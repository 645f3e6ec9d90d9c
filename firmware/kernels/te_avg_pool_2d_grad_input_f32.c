/* te_avg_pool_2d_grad_input_f32.c - AVERAGE_POOL_2D input gradient.
 * Contract: te_avg_pool_2d_grad_input_f32.h. */
#include "te_avg_pool_2d_grad_input_f32.h"

#include <stddef.h>

#include "te_grad_common.h"
#include "te_window.h"

void te_avg_pool_2d_grad_input_f32(const float *grad_out, int32_t batches, int32_t out_h,
                                   int32_t out_w, int32_t channels, float *grad_in,
                                   int32_t in_h, int32_t in_w, int32_t filter_h,
                                   int32_t filter_w, int32_t stride_h, int32_t stride_w,
                                   int32_t pad_top, int32_t pad_left)
{
    te_zero_f32(grad_in, batches * in_h * in_w * channels);
    for (int32_t b = 0; b < batches; ++b) {
        float *gi_b = grad_in + (size_t)b * in_h * in_w * channels;
        for (int32_t oy = 0; oy < out_h; ++oy) {
            int32_t y0, y1;
            te_window_span(oy, stride_h, pad_top, filter_h, in_h, &y0, &y1);
            for (int32_t ox = 0; ox < out_w; ++ox, grad_out += channels) {
                int32_t x0, x1;
                te_window_span(ox, stride_w, pad_left, filter_w, in_w, &x0, &x1);
                const float count = (float)((y1 - y0) * (x1 - x0));
                for (int32_t iy = y0; iy < y1; ++iy) {
                    for (int32_t ix = x0; ix < x1; ++ix) {
                        float *gi = gi_b + ((size_t)iy * in_w + ix) * channels;
                        for (int32_t c = 0; c < channels; ++c) {
                            gi[c] += grad_out[c] / count;
                        }
                    }
                }
            }
        }
    }
}
