/*
 * te_avg_pool_2d_grad_input_f32.h - gradient of an int8 AVERAGE_POOL_2D with respect to its
 * input, float32, portable C99 (training backward).
 */
#ifndef TE_AVG_POOL_2D_GRAD_INPUT_F32_H
#define TE_AVG_POOL_2D_GRAD_INPUT_F32_H

#include <stdint.h>

/*
 * The forward (te_avg_pool_2d_s8.h) read as real numbers (input and output share one
 * quantization): y = the mean of the window's in-bounds pixels, count of them (padding is
 * never counted).  Given grad_out = dL/dy (after the clamp's mask):
 *
 * grad_in[b, iy, ix, c] = sum over the output pixels (oy, ox) whose window holds (iy, ix) of
 *                         grad_out[b, oy, ox, c] / (float)count(oy, ox)
 *
 * Arguments
 *   grad_out  [batches, out_h, out_w, channels] float32, NHWC.
 *   grad_in   [batches, in_h, in_w, channels] float32, overwritten; must not overlap grad_out.
 *   filter_h, filter_w, stride_h, stride_w >= 1; pad_top, pad_left >= 0 as in the forward.
 * Order of summation: grad_in is zeroed, then output pixels in increasing (b, oy, ox) add
 *   their share to the window's rows and columns in increasing order.
 * Preconditions: every window overlaps the image (count >= 1).
 * Scratch: none.
 */
void te_avg_pool_2d_grad_input_f32(const float *grad_out, int32_t batches, int32_t out_h,
                                   int32_t out_w, int32_t channels, float *grad_in,
                                   int32_t in_h, int32_t in_w, int32_t filter_h,
                                   int32_t filter_w, int32_t stride_h, int32_t stride_w,
                                   int32_t pad_top, int32_t pad_left);

#endif /* TE_AVG_POOL_2D_GRAD_INPUT_F32_H */
