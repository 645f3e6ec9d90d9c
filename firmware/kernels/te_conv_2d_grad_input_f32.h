/*
 * te_conv_2d_grad_input_f32.h - gradient of an int8 CONV_2D with respect to its input,
 * float32, portable C99 (training backward).
 */
#ifndef TE_CONV_2D_GRAD_INPUT_F32_H
#define TE_CONV_2D_GRAD_INPUT_F32_H

#include <stdint.h>

/*
 * The forward (te_conv_2d_s8.h) read as real numbers: y = conv(x, w) + b with
 * w[oc, ky, kx, ic] = filter_scale[oc] * filter[oc, ky, kx, ic], dilation 1.  Given
 * grad_out = dL/dy (after the clamp's mask, te_clamp_grad_input_f32.h):
 *
 * grad_in[b, iy, ix, ic] = sum over (oy, ox, ky, kx, oc) with iy = oy * stride_h - pad_top + ky,
 *                          ix = ox * stride_w - pad_left + kx of
 *                          (grad_out[b, oy, ox, oc] * filter_scale[oc]) * filter[oc, ky, kx, ic]
 *
 * Taps on the padding contribute nothing (the pad value is the input zero point, real 0);
 * input pixels no window reads get 0.
 *
 * Arguments
 *   grad_out      [batches, out_h, out_w, out_c] float32, NHWC.
 *   filter        [out_c, k_h, k_w, in_c] int8 (OHWI), as stored for the forward.
 *   filter_scale  [out_c] float32 per-channel weight scales (per-tensor: one value repeated).
 *   grad_in       [batches, in_h, in_w, in_c] float32, NHWC, overwritten; must not overlap
 *                 grad_out.
 *   pad_top, pad_left >= 0: the forward's padding (SAME, VALID or explicit); bottom / right
 *                 padding follows from out_h, out_w.
 * Order of summation (fixed, so every build gives the same bits): grad_in is zeroed, then
 *   output pixels in increasing (b, oy, ox), channels oc, taps (ky, kx) add their products.
 *   Output gradients equal to 0.0f are skipped.
 * Preconditions: all sizes, k_h, k_w, strides >= 1; every output window overlaps the input.
 * Scratch: none.
 */
void te_conv_2d_grad_input_f32(const float *grad_out, int32_t batches, int32_t out_h,
                               int32_t out_w, int32_t out_c, const int8_t *filter,
                               const float *filter_scale, int32_t k_h, int32_t k_w,
                               float *grad_in, int32_t in_h, int32_t in_w, int32_t in_c,
                               int32_t stride_h, int32_t stride_w, int32_t pad_top,
                               int32_t pad_left);

/*
 * The same (same arguments, same order of summation, the same bits) with filter in
 * te_conv_2d_mat_mult_s8_dsp.h's layout (tinyengine's pack_weights_dsp of the [out_c,
 * k_h * k_w * in_c] rows: rows zero-padded to a multiple of 4, pairs of rows with their
 * groups of 4 interleaved, an odd last row on its own): the backward of a layer whose
 * frozen weights the forward's DSP kernel reads, with no second copy of them.
 */
void te_conv_2d_grad_input_f32_packed(const float *grad_out, int32_t batches, int32_t out_h,
                                      int32_t out_w, int32_t out_c, const int8_t *filter,
                                      const float *filter_scale, int32_t k_h, int32_t k_w,
                                      float *grad_in, int32_t in_h, int32_t in_w, int32_t in_c,
                                      int32_t stride_h, int32_t stride_w, int32_t pad_top,
                                      int32_t pad_left);

#endif /* TE_CONV_2D_GRAD_INPUT_F32_H */
