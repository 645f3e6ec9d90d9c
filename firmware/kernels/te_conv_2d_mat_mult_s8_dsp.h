/*
 * te_conv_2d_mat_mult_s8_dsp.h - the inner product stage shared by the DSP convolution
 * kernels (te_conv_2d_1x1_s8_dsp, te_conv_2d_s8_dsp): every output channel of one or two
 * output pixels, from columns already widened to int16, with SMLAD, requantized to int8.
 * Armv7E-M DSP extension (Cortex-M4/M7); plain C elsewhere (te_dsp.h), same results.
 *
 * Layouts (k4 = groups of 4 column values; a column is the K = k_h * k_w * in_c input values
 * one output pixel reads, in the filter's (ky, kx, ic) order, zero-padded to 4 * k4):
 *   cols     int16 pairs as int32 words, word-aligned.  For group g and column c (0 or 1) two words:
 *            te_sxtb16(v) and te_sxtb16_ror8(v) of the 4 values v = col_c[4g .. 4g+3]
 *            (lanes (v0, v2) and (v1, v3)).  Two columns: [g][c][2 words], 16 bytes per
 *            group; one column: [g][2 words], 8 bytes per group.
 *   weights  int8, "packed" at compile time by tinyengine.ops.conv.pack_weights_dsp: output
 *            channels in pairs (2p, 2p+1), for each group 4 bytes of channel 2p then 4 bytes
 *            of channel 2p+1; an odd last channel has its own 4 bytes per group; every
 *            channel's row zero-padded from K to 4 * k4 values.  out_c * 4 * k4 bytes.
 *   mult, rshift  [out_c] int32 and int8: each channel's TFLite multiplier and e = -shift,
 *            with rq_mode (TE_RQ_FAST, TE_RQ_FULL_RANGE), from tinyengine.ops.conv.requant_dsp
 *            (te_dsp.h describes the encoding).
 *   out0, out1  output pixels (out_c int8 each); out1 is ignored when n_cols == 1.
 * Results: outN[oc] = clamp(te_mbqm(acc_init[oc] + sum_k W[oc, k] * col_N[k], mult[oc],
 *   -rshift[oc]) + output_offset, act_min, act_max), bit-exact with te_conv_2d_s8 when the
 *   columns hold the input values (pad_value in padded taps).
 * Preconditions: n_cols in {1, 2}, k4 >= 1, out_c >= 1, weights and cols word-aligned,
 *   act_min <= act_max in [-128, 127], the accumulator does not overflow int32, and
 *   rq_mode's preconditions (te_dsp.h).
 * Overlap contract (TE_OVERLAP: window group=1): reads no activation input (only cols), so
 *   its callers' contract holds.
 * Scratch: none (the caller owns cols).
 */
#ifndef TE_CONV_2D_MAT_MULT_S8_DSP_H
#define TE_CONV_2D_MAT_MULT_S8_DSP_H

#include <stdint.h>

/* The layer's constant operands, filled once per call by the kernels. */
typedef struct {
    const int8_t *weights;
    const int32_t *acc_init;
    const int32_t *mult;
    const int8_t *rshift;
    int32_t k4, out_c, output_offset, act_min, act_max, rq_mode;
} te_mm_dsp_args;

void te_conv_2d_mat_mult_s8_dsp(const te_mm_dsp_args *a, const int32_t *cols, int32_t n_cols,
                                int8_t *out0, int8_t *out1);

#endif /* TE_CONV_2D_MAT_MULT_S8_DSP_H */
