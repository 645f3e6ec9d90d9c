/*
 * te_fully_connected_s8_dsp.h - int8 fully connected layer for Cortex-M4/M7 with the DSP
 * extension (TFLite FULLY_CONNECTED, per-tensor or per-channel weights).  Portable twins:
 * te_fully_connected_s8 and te_fully_connected_per_channel_s8, bit for bit.
 *
 * output[b, o] = clamp(te_mbqm(acc_init[o] + sum_i weights[o, i] * input[b, i], M[o], -E[o])
 *                      + output_offset, act_min, act_max)
 * with (M[o], E[o]) = (mult[o], rshift[o]) when per_channel, else (mult[0], rshift[0]).
 * One batch row at a time, four output rows at a time (SXTB16 of the input words inside the
 * loop, SMLAD), no scratch.
 *
 * Arguments
 *   input     [batches, in_features] int8, any alignment.
 *   weights   [out_features, in_features] packed by tinyengine.ops.fully_connected.
 *             pack_weights_fc_dsp: every row zero-padded to 4 * k4 values (k4 =
 *             ceil(in_features / 4)); rows in quads (4q .. 4q+3), for each group g of 4
 *             values the 4 bytes of row 4q, then of 4q+1, 4q+2, 4q+3 (16 bytes per group);
 *             the out_features % 4 last rows follow one after the other, each 4 * k4 bytes.
 *             Word-aligned.
 *   acc_init  [out_features] int32 as te_fully_connected_s8.
 *   mult, rshift, per_channel, rq_mode  int32 multipliers and int8 e = -shift, one per output
 *             (per_channel = 1) or a single pair (per_channel = 0), and the mode, from
 *             tinyengine.ops.conv.requant_dsp (te_dsp.h).
 *   output    [batches, out_features] int8.  Must not overlap input.
 * Preconditions as te_fully_connected_s8; weights word-aligned; rq_mode's (te_dsp.h).
 * Scratch: none.
 */
#ifndef TE_FULLY_CONNECTED_S8_DSP_H
#define TE_FULLY_CONNECTED_S8_DSP_H

#include <stdint.h>

void te_fully_connected_s8_dsp(const int8_t *input, const int8_t *weights,
                               const int32_t *acc_init, int8_t *output, int32_t batches,
                               int32_t in_features, int32_t out_features,
                               const int32_t *mult, const int8_t *rshift, int32_t per_channel,
                               int32_t rq_mode, int32_t output_offset, int32_t act_min,
                               int32_t act_max);

#endif /* TE_FULLY_CONNECTED_S8_DSP_H */
