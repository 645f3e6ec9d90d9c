/*
 * te_conv_2d_1x1_s8_dsp.h - int8 1x1 (pointwise) convolution for Cortex-M4/M7 with the DSP
 * extension (TFLite CONV_2D with a 1x1 filter, any stride; a 1x1 filter never pads).
 * Portable twin: te_conv_2d_s8 (te_conv_2d_s8.h), bit for bit.
 *
 * output[b, oy, ox, :] = the te_conv_2d_mat_mult_s8_dsp stage on the column
 *   input[b, oy * stride_h, ox * stride_w, 0 .. in_c-1]; two output pixels at a time.
 *
 * Arguments
 *   input     [batches, in_h, in_w, in_c] int8, NHWC.
 *   weights   the filter [out_c, 1, 1, in_c] packed by tinyengine.ops.conv.pack_weights_dsp
 *             (layout in te_conv_2d_mat_mult_s8_dsp.h, k4 = ceil(in_c / 4)).
 *   acc_init  [out_c] int32: bias[oc] + input_offset * sum(filter[oc]) (as te_conv_2d_s8).
 *   mult, rshift, rq_mode  [out_c] int32 multipliers, [out_c] int8 e = -shift and the mode
 *             from tinyengine.ops.conv.requant_dsp (te_dsp.h; 5 bytes per channel).
 *   output    [batches, out_h, out_w, out_c] int8 (overlap: see below).
 *   output_offset, act_min, act_max as te_conv_2d_s8.
 * Preconditions: sizes >= 1, strides >= 1, out_h = (in_h - 1) / stride_h + 1 and the same for
 *   w (or smaller), weights word-aligned.
 * Overlap contract (TE_OVERLAP: window group=1): as te_conv_2d_s8_dsp.h (pixels in pairs,
 *   both read into scratch before either is written).
 * Scratch: TE_CONV_2D_1X1_S8_DSP_SCRATCH(in_c) = 16 * ceil(in_c / 4) bytes, word-aligned
 *   (the two widened columns); tinyengine.ops.conv uses the same formula.
 */
#ifndef TE_CONV_2D_1X1_S8_DSP_H
#define TE_CONV_2D_1X1_S8_DSP_H

#include <stdint.h>

#include "te_conv_args.h"

#define TE_CONV_2D_1X1_S8_DSP_SCRATCH(in_c) (16 * (((in_c) + 3) / 4))

void te_conv_2d_1x1_s8_dsp(const int8_t *input, int32_t batches, int32_t in_h, int32_t in_w,
                           int32_t in_c, const int8_t *weights, int32_t out_c,
                           const int32_t *acc_init, int8_t *output, int32_t out_h,
                           int32_t out_w, int32_t stride_h, int32_t stride_w,
                           const int32_t *mult, const int8_t *rshift, int32_t rq_mode,
                           int32_t output_offset, int32_t act_min, int32_t act_max,
                           int8_t *scratch);

/* The same call with its constant arguments in a te_conv_args (te_conv_args.h). */
void te_conv_2d_1x1_s8_dsp_call(const te_conv_args *a, const int8_t *input, int8_t *output,
                                int8_t *scratch);

#endif /* TE_CONV_2D_1X1_S8_DSP_H */
