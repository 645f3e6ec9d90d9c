/* te_depthwise_conv_2d_s8.c - int8 depthwise convolution, portable C99.
 * Contract: te_depthwise_conv_2d_s8.h. */
#include "te_depthwise_conv_2d_s8.h"

#include "te_common.h"

void te_depthwise_conv_2d_s8(const int8_t *input, int32_t batches, int32_t in_h,
                             int32_t in_w, int32_t in_c, const int8_t *filter,
                             int32_t depth_multiplier, int32_t k_h, int32_t k_w,
                             const int32_t *acc_init, int8_t *output, int32_t out_h,
                             int32_t out_w, int32_t stride_h, int32_t stride_w, int32_t dil_h,
                             int32_t dil_w, int32_t pad_top, int32_t pad_left,
                             int32_t pad_value, const int32_t *out_mult,
                             const int32_t *out_shift, int32_t output_offset, int32_t act_min,
                             int32_t act_max)
{
    const int32_t out_c = in_c * depth_multiplier;
    for (int32_t b = 0; b < batches; ++b) {
        const int8_t *in_b = input + (size_t)b * in_h * in_w * in_c;
        for (int32_t oy = 0; oy < out_h; ++oy) {
            const int32_t iy0 = oy * stride_h - pad_top;
            for (int32_t ox = 0; ox < out_w; ++ox) {
                const int32_t ix0 = ox * stride_w - pad_left;
                for (int32_t ic = 0; ic < in_c; ++ic) {
                    for (int32_t m = 0; m < depth_multiplier; ++m) {
                        const int32_t oc = ic * depth_multiplier + m;
                        int32_t acc = acc_init[oc];
                        for (int32_t ky = 0; ky < k_h; ++ky) {
                            const int32_t iy = iy0 + ky * dil_h;
                            const int row_ok = iy >= 0 && iy < in_h;
                            const int8_t *w = filter + (size_t)ky * k_w * out_c + oc;
                            for (int32_t kx = 0; kx < k_w; ++kx, w += out_c) {
                                const int32_t ix = ix0 + kx * dil_w;
                                const int32_t x = (row_ok && ix >= 0 && ix < in_w)
                                    ? in_b[((size_t)iy * in_w + ix) * in_c + ic]
                                    : pad_value;
                                acc += (int32_t)*w * x;
                            }
                        }
                        acc = te_mbqm(acc, out_mult[oc], out_shift[oc]) + output_offset;
                        output[oc] = (int8_t)te_clamp_i32(acc, act_min, act_max);
                    }
                }
                output += out_c;
            }
        }
    }
}
