/*
 * te_avg_pool_2d_s8.h - int8 average pooling, portable C99 (TFLite AVERAGE_POOL_2D).
 *
 * Bit-exact with TensorFlow Lite Micro's reference_integer_ops::AveragePool.
 */
#ifndef TE_AVG_POOL_2D_S8_H
#define TE_AVG_POOL_2D_S8_H

#include <stdint.h>

/*
 * For each output pixel (b, oy, ox) and channel c the window is rows
 * oy * stride_h - pad_top + [0, filter_h) and columns ox * stride_w - pad_left + [0, filter_w)
 * of the input, clipped to the image (padding is never read):
 * acc = sum of the in-bounds pixels of the window, count = their number (>= 1);
 * output = clamp(acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count,
 *                act_min, act_max)      (C division, truncating: rounds half away from 0)
 *
 * Arguments
 *   input   [batches, in_h, in_w, channels] int8, NHWC.
 *   output  [batches, out_h, out_w, channels] int8, NHWC, in the input's quantization.
 *   Overlap contract (TE_OVERLAP: window group=1): output pixels are computed one at a time
 *   in increasing (b, oy, ox) order; once any byte of output pixel q is written, the kernel
 *   reads only input bytes in the windows of output pixels >= q.  The output may thus
 *   start inside the input where tinyengine/overlap.py proves it safe; keep this order
 *   (or change this line) when changing the loops.
 *   pad_top, pad_left >= 0 (SAME padding puts the odd pixel at the bottom / right).
 *   act_min <= act_max in [-128, 127]: the fused activation's bounds.
 * Preconditions (checked by the op's check()): sizes, filter and strides >= 1, and every
 *   window overlaps the image.
 * Scratch: none.
 */
void te_avg_pool_2d_s8(const int8_t *input, int32_t batches, int32_t in_h, int32_t in_w,
                       int32_t channels, int8_t *output, int32_t out_h, int32_t out_w,
                       int32_t filter_h, int32_t filter_w, int32_t stride_h, int32_t stride_w,
                       int32_t pad_top, int32_t pad_left, int32_t act_min, int32_t act_max);

#endif /* include guard */
