/* te_avg_pool_2d_s8.c - int8 average pooling, portable C99.  Contract: te_avg_pool_2d_s8.h. */
#include "te_avg_pool_2d_s8.h"

#include "te_common.h"

void te_avg_pool_2d_s8(const int8_t *input, int32_t batches, int32_t in_h, int32_t in_w,
                       int32_t channels, int8_t *output, int32_t out_h, int32_t out_w,
                       int32_t filter_h, int32_t filter_w, int32_t stride_h, int32_t stride_w,
                       int32_t pad_top, int32_t pad_left, int32_t act_min, int32_t act_max)
{
    for (int32_t b = 0; b < batches; ++b) {
        const int8_t *in_b = input + (size_t)b * in_h * in_w * channels;
        for (int32_t oy = 0; oy < out_h; ++oy) {
            const int32_t y0 = oy * stride_h - pad_top;
            const int32_t ys = te_max_i32(0, y0);
            const int32_t ye = te_min_i32(in_h, y0 + filter_h);
            for (int32_t ox = 0; ox < out_w; ++ox) {
                const int32_t x0 = ox * stride_w - pad_left;
                const int32_t xs = te_max_i32(0, x0);
                const int32_t xe = te_min_i32(in_w, x0 + filter_w);
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
