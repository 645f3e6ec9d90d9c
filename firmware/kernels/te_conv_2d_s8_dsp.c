/* te_conv_2d_s8_dsp.c - int8 2-D convolution (im2col + SMLAD).
 * Contract: te_conv_2d_s8_dsp.h. */
#include "te_conv_2d_s8_dsp.h"

#include "te_conv_2d_mat_mult_s8_dsp.h"
#include "te_dsp.h"

/* A word at a time (unaligned STR), then bytes: a loop, not libc memset (the project builds
 * with -fno-tree-loop-distribute-patterns).  Out of line: padding is the rare case, and
 * inlined it costs te_gather_column's copy path a register (+0.07% instructions on
 * mcunet-vww1, whose first layer copies 9-byte rows). */
__attribute__((noinline)) static void te_fill_s8(int8_t *dst, int32_t value, int32_t n)
{
    const int32_t word = (int32_t)((uint32_t)(uint8_t)value * 0x01010101u);
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        te_write_w(dst + i, word);
    }
    for (; i < n; ++i) {
        dst[i] = (int8_t)value;
    }
}

static void te_copy_s8(int8_t *dst, const int8_t *src, int32_t n)
{
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        te_write_w(dst + i, te_read_w(src + i));
    }
    for (; i < n; ++i) {
        dst[i] = src[i];
    }
}

/* The K input values output pixel (oy, ox) reads, into col. */
static void te_gather_column(const int8_t *in_b, int32_t in_h, int32_t in_w, int32_t in_c,
                             int32_t k_h, int32_t k_w, int32_t oy, int32_t ox,
                             int32_t stride_h, int32_t stride_w, int32_t dil_h, int32_t dil_w,
                             int32_t pad_top, int32_t pad_left, int32_t pad_value, int8_t *col)
{
    const int32_t iy0 = oy * stride_h - pad_top;
    const int32_t ix0 = ox * stride_w - pad_left;
    const int32_t row_len = k_w * in_c;
    const int cols_inside = ix0 >= 0 && ix0 + (k_w - 1) * dil_w < in_w;
    for (int32_t ky = 0; ky < k_h; ++ky, col += row_len) {
        const int32_t iy = iy0 + ky * dil_h;
        if (iy < 0 || iy >= in_h) {
            te_fill_s8(col, pad_value, row_len);
            continue;
        }
        const int8_t *row = in_b + (size_t)iy * in_w * in_c;
        if (cols_inside && dil_w == 1) {
            te_copy_s8(col, row + (size_t)ix0 * in_c, row_len);
            continue;
        }
        for (int32_t kx = 0; kx < k_w; ++kx) {
            const int32_t ix = ix0 + kx * dil_w;
            if (ix >= 0 && ix < in_w) {
                te_copy_s8(col + kx * in_c, row + (size_t)ix * in_c, in_c);
            } else {
                te_fill_s8(col + kx * in_c, pad_value, in_c);
            }
        }
    }
}

void te_conv_2d_s8_dsp(const int8_t *input, int32_t batches, int32_t in_h, int32_t in_w,
                       int32_t in_c, const int8_t *weights, int32_t out_c, int32_t k_h,
                       int32_t k_w, const int32_t *acc_init, int8_t *output, int32_t out_h,
                       int32_t out_w, int32_t stride_h, int32_t stride_w, int32_t dil_h,
                       int32_t dil_w, int32_t pad_top, int32_t pad_left, int32_t pad_value,
                       const int32_t *mult, const int8_t *rshift, int32_t rq_mode,
                       int32_t output_offset, int32_t act_min, int32_t act_max,
                       int8_t *scratch)
{
    const int32_t k = k_h * k_w * in_c;
    const int32_t k4 = (k + 3) >> 2;
    int32_t *cols = (int32_t *)(void *)scratch;
    int8_t *col_a = scratch + 16 * k4;
    int8_t *col_b = col_a + 4 * k4;
    const int32_t pixels = out_h * out_w;
    const te_mm_dsp_args mm = {weights, acc_init, mult, rshift, k4, out_c,
                               output_offset, act_min, act_max, rq_mode};
    /* the padding values after K stay zero (their weights are zero too) */
    te_fill_s8(col_a + k, 0, 4 * k4 - k);
    te_fill_s8(col_b + k, 0, 4 * k4 - k);
    for (int32_t b = 0; b < batches; ++b) {
        const int8_t *in_b = input + (size_t)b * in_h * in_w * in_c;
        int8_t *out = output + (size_t)b * pixels * out_c;
        int32_t oy = 0, ox = 0;
        int32_t p = 0;
        for (; p + 2 <= pixels; p += 2) {
            te_gather_column(in_b, in_h, in_w, in_c, k_h, k_w, oy, ox, stride_h, stride_w,
                             dil_h, dil_w, pad_top, pad_left, pad_value, col_a);
            if (++ox == out_w) {
                ox = 0;
                ++oy;
            }
            te_gather_column(in_b, in_h, in_w, in_c, k_h, k_w, oy, ox, stride_h, stride_w,
                             dil_h, dil_w, pad_top, pad_left, pad_value, col_b);
            if (++ox == out_w) {
                ox = 0;
                ++oy;
            }
            te_dsp_widen_cols(col_a, col_b, 4 * k4, cols);
            te_conv_2d_mat_mult_s8_dsp(&mm, cols, 2, out, out + out_c);
            out += 2 * out_c;
        }
        if (p < pixels) {
            te_gather_column(in_b, in_h, in_w, in_c, k_h, k_w, oy, ox, stride_h, stride_w,
                             dil_h, dil_w, pad_top, pad_left, pad_value, col_a);
            te_dsp_widen_cols(col_a, NULL, 4 * k4, cols);
            te_conv_2d_mat_mult_s8_dsp(&mm, cols, 1, out, NULL);
        }
    }
}

void te_conv_2d_s8_dsp_call(const te_conv_args *a, const int8_t *input, int8_t *output,
                            int8_t *scratch)
{
    const int32_t n = a->out_c;
    const int32_t *t = te_conv_args_table(a, n, n, &scratch);
    te_conv_2d_s8_dsp(input, a->batches, a->in_h, a->in_w, a->in_c, a->weights, n, a->k_h, a->k_w,
                      t, output, a->out_h, a->out_w, a->stride_h, a->stride_w, a->dil_h, a->dil_w,
                      a->pad_top, a->pad_left, a->in_value, t + n,
                      (const int8_t *)(const void *)(t + 2 * n), a->rq_mode, a->output_offset,
                      a->act_min, a->act_max, scratch);
}
