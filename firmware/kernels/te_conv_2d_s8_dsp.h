/*
 * te_conv_2d_s8_dsp.h - int8 2-D convolution, any kernel size, stride, dilation and padding,
 * for Cortex-M4/M7 with the DSP extension (TFLite CONV_2D).  Portable twin: te_conv_2d_s8
 * (te_conv_2d_s8.h), bit for bit.
 *
 * Two output pixels at a time: each one's column of K = k_h * k_w * in_c input values (the
 * filter's (ky, kx, ic) order, pad_value in padded taps) is gathered into int8 scratch, widened
 * (te_dsp_widen_cols) and handed to the te_conv_2d_mat_mult_s8_dsp stage.
 *
 * Arguments as te_conv_2d_s8 except
 *   weights   the filter [out_c, k_h, k_w, in_c] packed by tinyengine.ops.conv.pack_weights_dsp
 *             (layout in te_conv_2d_mat_mult_s8_dsp.h, k4 = ceil(K / 4)), word-aligned.
 *   mult, rshift, rq_mode  [out_c] int32 multipliers, [out_c] int8 e = -shift and the mode
 *             from tinyengine.ops.conv.requant_dsp (te_dsp.h; 5 bytes per channel).
 * Preconditions as te_conv_2d_s8.
 * Overlap contract (TE_OVERLAP: window group=1): output pixels are computed in pairs (p, p+1)
 *   in increasing (b, oy, ox) order, and both windows are gathered into scratch before any
 *   byte of the pair is written; once any byte of pixel q is written the kernel reads only
 *   windows of pixels >= p + 2 > q.  Its reads are thus a subset of a one-pixel-at-a-time
 *   kernel's, and every placement tinyengine/overlap.py proves safe for that is safe here.
 * Scratch: TE_CONV_2D_S8_DSP_SCRATCH(k_h, k_w, in_c) = 24 * ceil(K / 4) bytes, word-aligned:
 *   16 * k4 for the two widened columns, then 8 * k4 for the two int8 columns;
 *   tinyengine.ops.conv uses the same formula.
 */
#ifndef TE_CONV_2D_S8_DSP_H
#define TE_CONV_2D_S8_DSP_H

#include <stdint.h>

#include "te_conv_args.h"

#define TE_CONV_2D_S8_DSP_SCRATCH(k_h, k_w, in_c) (24 * (((k_h) * (k_w) * (in_c) + 3) / 4))

void te_conv_2d_s8_dsp(const int8_t *input, int32_t batches, int32_t in_h, int32_t in_w,
                       int32_t in_c, const int8_t *weights, int32_t out_c, int32_t k_h,
                       int32_t k_w, const int32_t *acc_init, int8_t *output, int32_t out_h,
                       int32_t out_w, int32_t stride_h, int32_t stride_w, int32_t dil_h,
                       int32_t dil_w, int32_t pad_top, int32_t pad_left, int32_t pad_value,
                       const int32_t *mult, const int8_t *rshift, int32_t rq_mode,
                       int32_t output_offset, int32_t act_min, int32_t act_max,
                       int8_t *scratch);

/* The same call with its constant arguments in a te_conv_args (te_conv_args.h). */
void te_conv_2d_s8_dsp_call(const te_conv_args *a, const int8_t *input, int8_t *output,
                            int8_t *scratch);

#endif /* TE_CONV_2D_S8_DSP_H */
