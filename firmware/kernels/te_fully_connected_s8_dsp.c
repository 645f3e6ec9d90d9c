/* te_fully_connected_s8_dsp.c - int8 fully connected, SMLAD.
 * Contract: te_fully_connected_s8_dsp.h. */
#include "te_fully_connected_s8_dsp.h"

#include "te_conv_2d_mat_mult_s8_dsp.h"
#include "te_dsp.h"

void te_fully_connected_s8_dsp(const int8_t *input, const int8_t *weights,
                               const int32_t *acc_init, int8_t *output, int32_t batches,
                               int32_t in_features, int32_t out_features,
                               const int32_t *requant, int32_t output_offset, int32_t act_min,
                               int32_t act_max, int8_t *scratch)
{
    int32_t *cols = (int32_t *)(void *)scratch;
    const int32_t k4 = (in_features + 3) >> 2;
    int32_t b = 0;
    for (; b + 2 <= batches; b += 2) {
        const int8_t *xa = input + (size_t)b * in_features;
        int8_t *out = output + (size_t)b * out_features;
        te_dsp_widen_cols(xa, xa + in_features, in_features, cols);
        te_conv_2d_mat_mult_s8_dsp(weights, cols, 2, k4, out_features, acc_init, requant,
                                   output_offset, act_min, act_max, out, out + out_features);
    }
    if (b < batches) {
        te_dsp_widen_cols(input + (size_t)b * in_features, NULL, in_features, cols);
        te_conv_2d_mat_mult_s8_dsp(weights, cols, 1, k4, out_features, acc_init, requant,
                                   output_offset, act_min, act_max,
                                   output + (size_t)b * out_features, NULL);
    }
}
