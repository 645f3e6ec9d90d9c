/* te_conv_2d_1x1_s8_dsp.c - int8 pointwise convolution, SMLAD.
 * Contract: te_conv_2d_1x1_s8_dsp.h. */
#include "te_conv_2d_1x1_s8_dsp.h"

#include "te_conv_2d_mat_mult_s8_dsp.h"
#include "te_dsp.h"

void te_conv_2d_1x1_s8_dsp(const int8_t *input, int32_t batches, int32_t in_h, int32_t in_w,
                           int32_t in_c, const int8_t *weights, int32_t out_c,
                           const int32_t *acc_init, int8_t *output, int32_t out_h,
                           int32_t out_w, int32_t stride_h, int32_t stride_w,
                           const int32_t *mult, const int8_t *rshift, int32_t rq_mode,
                           int32_t output_offset, int32_t act_min, int32_t act_max,
                           int8_t *scratch)
{
    int32_t *cols = (int32_t *)(void *)scratch;
    const int32_t k4 = (in_c + 3) >> 2;
    const int32_t pixels = out_h * out_w;
    const int32_t dense = stride_h == 1 && stride_w == 1 && out_w == in_w;
    const te_mm_dsp_args mm = {weights, acc_init, mult, rshift, k4, out_c,
                               output_offset, act_min, act_max, rq_mode};
    for (int32_t b = 0; b < batches; ++b) {
        const int8_t *in_b = input + (size_t)b * in_h * in_w * in_c;
        int8_t *out = output + (size_t)b * pixels * out_c;
        int32_t p = 0;
        int32_t oy = 0, ox = 0;
        for (; p + 2 <= pixels; p += 2) {
            const int8_t *xa, *xb;
            if (dense) {
                xa = in_b + (size_t)p * in_c;
                xb = xa + in_c;
            } else {
                xa = in_b + ((size_t)oy * stride_h * in_w + (size_t)ox * stride_w) * in_c;
                if (++ox == out_w) {
                    ox = 0;
                    ++oy;
                }
                xb = in_b + ((size_t)oy * stride_h * in_w + (size_t)ox * stride_w) * in_c;
                if (++ox == out_w) {
                    ox = 0;
                    ++oy;
                }
            }
            te_dsp_widen_cols(xa, xb, in_c, cols);
            te_conv_2d_mat_mult_s8_dsp(&mm, cols, 2, out, out + out_c);
            out += 2 * out_c;
        }
        if (p < pixels) {
            const int32_t ty = p / out_w, tx = p - (p / out_w) * out_w;
            const int8_t *xa =
                in_b + ((size_t)ty * stride_h * in_w + (size_t)tx * stride_w) * in_c;
            te_dsp_widen_cols(xa, NULL, in_c, cols);
            te_conv_2d_mat_mult_s8_dsp(&mm, cols, 1, out, NULL);
        }
    }
}

void te_conv_2d_1x1_s8_dsp_call(const te_conv_args *a, const int8_t *input, int8_t *output,
                                int8_t *scratch)
{
    const int32_t n = a->out_c;
    const int32_t *t = te_conv_args_table(a, n, n, &scratch);
    te_conv_2d_1x1_s8_dsp(input, a->batches, a->in_h, a->in_w, a->in_c, a->weights, n, t, output,
                          a->out_h, a->out_w, a->stride_h, a->stride_w, t + n,
                          (const int8_t *)(const void *)(t + 2 * n), a->rq_mode,
                          a->output_offset, a->act_min, a->act_max, scratch);
}
