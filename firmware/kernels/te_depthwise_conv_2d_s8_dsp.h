/*
 * te_depthwise_conv_2d_s8_dsp.h - int8 depthwise 2-D convolution (TFLite DEPTHWISE_CONV_2D,
 * depth multiplier 1) for the Armv7E-M DSP extension (Cortex-M4/M7): four channels at a
 * time from one 32-bit load of the NHWC input, SXTAB16 (sign extension and input offset in
 * one instruction) and SMLABB/SMLATT, padded taps skipped, 3x3 windows unrolled,
 * requantization fused.  Plain C elsewhere (te_dsp.h), with the same results.  Portable
 * twin: te_depthwise_conv_2d_s8; both are bit-exact with TensorFlow Lite Micro.
 *
 * Result (as te_depthwise_conv_2d_s8.h with depth_multiplier = 1; c = channel):
 *   output[b, oy, ox, c] = clamp(te_mbqm(acc, mult[c], shift[c]) + output_offset,
 *                                act_min, act_max)
 *   acc = bias[c] + sum over the taps inside the image of
 *         W[ky, kx, c] * (input[b, oy*stride_h - pad_top + ky*dil_h,
 *                               ox*stride_w - pad_left + kx*dil_w, c] + input_offset)
 *   (TFLite Micro's sum: padded taps are skipped).
 *
 * Arguments
 *   input      [batches, in_h, in_w, in_c] int8, NHWC, any alignment.
 *   filter     W rearranged at compile time by tinyengine.ops.depthwise_conv.pack_filter_dsp
 *              (same byte count as TFLite's [1, k_h, k_w, in_c]): for each group g of four
 *              channels 4g..4g+3 (g < in_c / 4), the k_h * k_w taps in (ky, kx) order, 4 bytes
 *              per tap (channels 4g..4g+3); then for each of the in_c % 4 remaining channels
 *              its k_h * k_w taps, 1 byte each.
 *   rq         int32, 4-byte aligned (tinyengine.ops.depthwise_conv.requant_dsp_dw): for
 *              each group of four channels 4g..4g+3 (g < in_c / 4) 9 words: the 4 biases
 *              bias[c] (0 without bias; the accumulator's start), the 4 multipliers mult[c]
 *              in [2^30, 2^31) (TFLite's), then one word holding the 4 bytes k[c] = e - 1
 *              (uint8, in memory order, channel 4g first), e = -shift[c] in [1, 31]; then,
 *              if r = in_c % 4 > 0, 2r + 1 words laid out likewise for the remaining
 *              channels (r biases, r multipliers, a word whose first r bytes are their k).
 *              Requantization: s = SMMULR(2 * acc, mult) (= SaturatingRoundingDoublingHighMul),
 *              y = (((s - [acc < 0]) >> k) + 2 * output_offset + 1) >> 1 (arithmetic shifts;
 *              = RoundingDivideByPOT(s, e) + output_offset), clamped; [acc < 0] is dropped
 *              when output_offset = act_min = -128 and act_max = 127 (it cannot change the
 *              clamped value then; the last shift and the clamp are one SSAT #8, ASR #1);
 *              bit-exact with te_mbqm under the preconditions
 *              (tests/test_kernels_depthwise.py::test_requantization_identity).
 *   output     [batches, out_h, out_w, in_c] int8.  May overlap the input (see below).
 *   input_offset   minus the input zero point, in [-127, 128].
 *   output_offset, act_min <= act_max  in [-128, 127].
 *   scratch    NULL, or 8 * (in_c / 4) * k_h * k_w bytes, 4-byte aligned
 *              (dsp_scratch_bytes in tinyengine/ops/depthwise_conv.py): the kernel first
 *              widens the groups' weights there (per tap two words of int16 pairs, (w0, w2)
 *              and (w1, w3)) and then reads them with LDRD instead of sign-extending every
 *              weight at every pixel (only with the fast requantization; other layers
 *              read the int8 weights).  Same results either way; prepare() decides.
 * Optional fast paths: the pixel loops for 3x3 windows (widened or int8 weights) and for
 *              other windows with the widened weights can be left out of a build
 *              (TE_DW_DSP_3X3_WIDE / TE_DW_DSP_3X3_INT8 / TE_DW_DSP_RUN_WIDE = 0; see the .c):
 *              their pixels then take the general loop, with the same results.
 * Preconditions (checked by tinyengine.ops.depthwise_conv.dsp_preconditions; otherwise the
 * op keeps the portable kernel): depth multiplier 1, all sizes >= 1, strides and dilations
 * >= 1, pads >= 0; every shift[c] in [-31, -1] and mult[c] in [2^30, 2^31); and
 * |bias[c]| + 255 * sum |W[., ., c]| < 2^30, so that 2 * acc cannot overflow.
 *
 * Order of memory accesses (the in-place contract): output pixels are produced one at a
 * time in increasing (batch, oy, ox) order.  For each pixel, the groups of 4 channels in
 * increasing order, each group's window bytes read before its 4 output bytes are written,
 * then the remaining channels likewise, one by one.  Input bytes read for pixel q lie in the
 * window of q (rows oy*stride_h - pad_top + ky*dil_h, columns likewise, clipped to the
 * image); padded taps read nothing.  Hence once any byte of output pixel q is written, every
 * input byte still read belongs to the window of an output pixel >= q:
 * TE_OVERLAP: window group=1
 * DepthwiseConv2D.overlap_bytes (tinyengine/ops/depthwise_conv.py) gives, for a node, the
 * largest D such that the output may start at (input start + d) for every d <= D.
 */
#ifndef TE_DEPTHWISE_CONV_2D_S8_DSP_H
#define TE_DEPTHWISE_CONV_2D_S8_DSP_H

#include <stdint.h>

#include "te_conv_args.h"

void te_depthwise_conv_2d_s8_dsp(const int8_t *input, int32_t batches, int32_t in_h,
                                 int32_t in_w, int32_t in_c, const int8_t *filter,
                                 int32_t k_h, int32_t k_w, const int32_t *rq,
                                 int8_t *output, int32_t out_h, int32_t out_w,
                                 int32_t stride_h, int32_t stride_w, int32_t dil_h,
                                 int32_t dil_w, int32_t pad_top, int32_t pad_left,
                                 int32_t input_offset, int32_t output_offset, int32_t act_min,
                                 int32_t act_max, int32_t *scratch);

/* The same call with its constant arguments in a te_conv_args (te_conv_args.h; rq is the
 * channel table, groups of four; the kernel gets the scratch after the table with
 * TE_CONV_ARGS_SCRATCH, else NULL). */
void te_depthwise_conv_2d_s8_dsp_call(const te_conv_args *a, const int8_t *input,
                                      int8_t *output, int8_t *scratch);

#endif /* TE_DEPTHWISE_CONV_2D_S8_DSP_H */
