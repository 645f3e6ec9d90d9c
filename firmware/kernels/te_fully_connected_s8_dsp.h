/*
 * te_fully_connected_s8_dsp.h - int8 fully connected layer for Cortex-M4/M7 with the DSP
 * extension (TFLite FULLY_CONNECTED, per-tensor or per-channel weights).  Portable twins:
 * te_fully_connected_s8 and te_fully_connected_per_channel_s8, bit for bit.
 *
 * output[b, o] = clamp(te_mbqm(acc_init[o] + sum_i weights[o, i] * input[b, i], M[o], S[o])
 *                      + output_offset, act_min, act_max)
 * computed by the te_conv_2d_mat_mult_s8_dsp stage, two batch rows at a time.
 *
 * Arguments
 *   input     [batches, in_features] int8.
 *   weights   [out_features, in_features] packed by tinyengine.ops.conv.pack_weights_dsp
 *             (layout in te_conv_2d_mat_mult_s8_dsp.h, k4 = ceil(in_features / 4)).
 *   acc_init  [out_features] int32 as te_fully_connected_s8.
 *   requant   [out_features][4] int32: tinyengine.ops.conv.requant_table_dsp of the
 *             per-output (M, S) (a per-tensor layer repeats its one multiplier).
 *   output    [batches, out_features] int8.  Must not overlap input.
 * Preconditions as te_fully_connected_s8; weights word-aligned.
 * Scratch: TE_FULLY_CONNECTED_S8_DSP_SCRATCH(in_features) = 16 * ceil(in_features / 4) bytes,
 *   word-aligned; tinyengine.ops.fully_connected uses the same formula.
 */
#ifndef TE_FULLY_CONNECTED_S8_DSP_H
#define TE_FULLY_CONNECTED_S8_DSP_H

#include <stdint.h>

#define TE_FULLY_CONNECTED_S8_DSP_SCRATCH(in_features) (16 * (((in_features) + 3) / 4))

void te_fully_connected_s8_dsp(const int8_t *input, const int8_t *weights,
                               const int32_t *acc_init, int8_t *output, int32_t batches,
                               int32_t in_features, int32_t out_features,
                               const int32_t *requant, int32_t output_offset, int32_t act_min,
                               int32_t act_max, int8_t *scratch);

#endif /* TE_FULLY_CONNECTED_S8_DSP_H */
