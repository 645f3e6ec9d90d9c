/* te_avg_pool_2d_s8.c - int8 average pooling, portable C99.  Contract: te_avg_pool_2d_s8.h. */
#include "te_avg_pool_2d_s8.h"

#include "te_window.h"

void te_avg_pool_2d_s8(const int8_t *input, int32_t batches, int32_t in_h, int32_t in_w,
                       int32_t channels, int8_t *output, int32_t out_h, int32_t out_w,
                       int32_t filter_h, int32_t filter_w, int32_t stride_h, int32_t stride_w,
                       int32_t pad_top, int32_t pad_left, int32_t act_min, int32_t act_max)
{
    for (int32_t b = 0; b < batches; ++b) {
        const int8_t *in_b = input + (size_t)b * in_h * in_w * channels;
        for (int32_t oy = 0; oy < out_h; ++oy) {
            int32_t ys, ye;
            te_window_span(oy, stride_h, pad_top, filter_h, in_h, &ys, &ye);
            for (int32_t ox = 0; ox < out_w; ++ox) {
                int32_t xs, xe;
                te_window_span(ox, stride_w, pad_left, filter_w, in_w, &xs, &xe);
                const int32_t count = (ye - ys) * (xe - xs);
                for (int32_t c = 0; c < channels; ++c) {
                    int32_t acc = 0;
                    for (int32_t iy = ys; iy < ye; ++iy) {
                        const int8_t *row = in_b + ((size_t)iy * in_w) * channels + c;
                        for (int32_t ix = xs; ix < xe; ++ix) {
                            acc += row[(size_t)ix * channels];
                        }
                    }
                    acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    *output++ = (int8_t)te_clamp_i32(acc, act_min, act_max);
                }
            }
        }
    }
}
