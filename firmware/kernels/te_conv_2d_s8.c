/* te_conv_2d_s8.c - int8 2-D convolution, portable C99.  Contract: te_conv_2d_s8.h. */
#include "te_conv_2d_s8.h"

#include "te_common.h"

/* sum_i a[i] * b[i], four products per iteration. */
static int32_t te_dot_s8(const int8_t *a, const int8_t *b, int32_t n)
{
    int32_t acc = 0;
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        acc += (int32_t)a[i] * b[i] + (int32_t)a[i + 1] * b[i + 1]
             + (int32_t)a[i + 2] * b[i + 2] + (int32_t)a[i + 3] * b[i + 3];
    }
    for (; i < n; ++i) {
        acc += (int32_t)a[i] * b[i];
    }
    return acc;
}

static int32_t te_sum_s8(const int8_t *a, int32_t n)
{
    int32_t s = 0;
    for (int32_t i = 0; i < n; ++i) {
        s += a[i];
    }
    return s;
}

void te_conv_2d_s8(const int8_t *input, int32_t batches, int32_t in_h, int32_t in_w,
                   int32_t in_c, const int8_t *filter, int32_t out_c, int32_t k_h,
                   int32_t k_w, const int32_t *acc_init, int8_t *output, int32_t out_h,
                   int32_t out_w, int32_t stride_h, int32_t stride_w, int32_t dil_h,
                   int32_t dil_w, int32_t pad_top, int32_t pad_left, int32_t pad_value,
                   const int32_t *out_mult, const int32_t *out_shift, int32_t output_offset,
                   int32_t act_min, int32_t act_max)
{
    const int32_t taps_len = k_h * k_w * in_c; /* weights per output channel */
    const int32_t row_len = k_w * in_c;        /* weights per kernel row */
    for (int32_t b = 0; b < batches; ++b) {
        const int8_t *in_b = input + (size_t)b * in_h * in_w * in_c;
        for (int32_t oy = 0; oy < out_h; ++oy) {
            const int32_t iy0 = oy * stride_h - pad_top;
            const int rows_inside = iy0 >= 0 && iy0 + (k_h - 1) * dil_h < in_h;
            for (int32_t ox = 0; ox < out_w; ++ox) {
                const int32_t ix0 = ox * stride_w - pad_left;
                const int inside =
                    rows_inside && ix0 >= 0 && ix0 + (k_w - 1) * dil_w < in_w;
                for (int32_t oc = 0; oc < out_c; ++oc) {
                    const int8_t *w = filter + (size_t)oc * taps_len;
                    int32_t acc = acc_init[oc];
                    if (inside && dil_w == 1) {
                        /* fast path: each kernel row reads k_w * in_c contiguous bytes */
                        for (int32_t ky = 0; ky < k_h; ++ky, w += row_len) {
                            const int8_t *x =
                                in_b + ((size_t)(iy0 + ky * dil_h) * in_w + ix0) * in_c;
                            acc += te_dot_s8(w, x, row_len);
                        }
                    } else {
                        for (int32_t ky = 0; ky < k_h; ++ky) {
                            const int32_t iy = iy0 + ky * dil_h;
                            const int row_ok = iy >= 0 && iy < in_h;
                            for (int32_t kx = 0; kx < k_w; ++kx, w += in_c) {
                                const int32_t ix = ix0 + kx * dil_w;
                                if (row_ok && ix >= 0 && ix < in_w) {
                                    acc += te_dot_s8(
                                        w, in_b + ((size_t)iy * in_w + ix) * in_c, in_c);
                                } else {
                                    /* padded tap: reads the input zero point */
                                    acc += te_sum_s8(w, in_c) * pad_value;
                                }
                            }
                        }
                    }
                    acc = te_mbqm(acc, out_mult[oc], out_shift[oc]) + output_offset;
                    *output++ = (int8_t)te_clamp_i32(acc, act_min, act_max);
                }
            }
        }
    }
}
