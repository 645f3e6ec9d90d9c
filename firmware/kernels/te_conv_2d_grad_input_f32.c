/* te_conv_2d_grad_input_f32.c - CONV_2D input gradient.  Contract: te_conv_2d_grad_input_f32.h. */
#include "te_conv_2d_grad_input_f32.h"

#include <stddef.h>

#include "te_grad_common.h"
#include "te_window.h"

/* Both layouts: filter value k (0 <= k < k_h * k_w * in_c) of output channel oc is
 * row[k] (packed == 0: row = filter + oc * k_h * k_w * in_c) or row[(k / 4) * step + k % 4]
 * (packed: te_conv_2d_mat_mult_s8_dsp's pairs of rows, step 8; an odd last row, step 4). */
static inline void grad_input(const float *grad_out, int32_t batches, int32_t out_h,
                              int32_t out_w, int32_t out_c, const int8_t *filter,
                              const float *filter_scale, int32_t k_h, int32_t k_w,
                              float *grad_in, int32_t in_h, int32_t in_w, int32_t in_c,
                              int32_t stride_h, int32_t stride_w, int32_t pad_top,
                              int32_t pad_left, int packed)
{
    const int32_t k_all = k_h * k_w * in_c;
    const int32_t k4 = (k_all + 3) & ~3;
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
                for (int32_t oc = 0; oc < out_c; ++oc) {
                    if (grad_out[oc] == 0.0f) {
                        continue;
                    }
                    const float g = grad_out[oc] * filter_scale[oc];
                    const int paired = oc < (out_c & ~1);
                    const int8_t *w = !packed ? filter + (size_t)oc * k_all
                                    : paired ? filter + (size_t)(oc >> 1) * 2 * k4 + (oc & 1) * 4
                                             : filter + (size_t)oc * k4;
                    const int32_t step = paired ? 8 : 4;
                    for (int32_t iy = y0; iy < y1; ++iy) { /* taps on the padding add nothing */
                        const int32_t ky = iy - iy0;
                        for (int32_t ix = x0; ix < x1; ++ix) {
                            const int32_t kx = ix - ix0;
                            const int32_t k0 = (ky * k_w + kx) * in_c;
                            float *gi = gi_b + ((size_t)iy * in_w + ix) * in_c;
                            if (!packed) {
                                const int8_t *wt = w + k0;
                                for (int32_t ic = 0; ic < in_c; ++ic) {
                                    gi[ic] += g * (float)wt[ic];
                                }
                            } else if ((in_c & 3) == 0) { /* whole groups of 4 */
                                const int8_t *wt = w + (k0 >> 2) * step;
                                for (int32_t ic = 0; ic < in_c; ic += 4, wt += step) {
                                    gi[ic] += g * (float)wt[0];
                                    gi[ic + 1] += g * (float)wt[1];
                                    gi[ic + 2] += g * (float)wt[2];
                                    gi[ic + 3] += g * (float)wt[3];
                                }
                            } else {
                                for (int32_t ic = 0; ic < in_c; ++ic) {
                                    const int32_t k = k0 + ic;
                                    gi[ic] += g * (float)w[(k >> 2) * step + (k & 3)];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

void te_conv_2d_grad_input_f32(const float *grad_out, int32_t batches, int32_t out_h,
                               int32_t out_w, int32_t out_c, const int8_t *filter,
                               const float *filter_scale, int32_t k_h, int32_t k_w,
                               float *grad_in, int32_t in_h, int32_t in_w, int32_t in_c,
                               int32_t stride_h, int32_t stride_w, int32_t pad_top,
                               int32_t pad_left)
{
    grad_input(grad_out, batches, out_h, out_w, out_c, filter, filter_scale, k_h, k_w, grad_in,
               in_h, in_w, in_c, stride_h, stride_w, pad_top, pad_left, 0);
}

void te_conv_2d_grad_input_f32_packed(const float *grad_out, int32_t batches, int32_t out_h,
                                      int32_t out_w, int32_t out_c, const int8_t *filter,
                                      const float *filter_scale, int32_t k_h, int32_t k_w,
                                      float *grad_in, int32_t in_h, int32_t in_w, int32_t in_c,
                                      int32_t stride_h, int32_t stride_w, int32_t pad_top,
                                      int32_t pad_left)
{
    grad_input(grad_out, batches, out_h, out_w, out_c, filter, filter_scale, k_h, k_w, grad_in,
               in_h, in_w, in_c, stride_h, stride_w, pad_top, pad_left, 1);
}
