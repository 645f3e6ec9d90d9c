/* te_fully_connected_per_channel_s8.c - int8 fully connected, per-channel, portable C99.
 * Contract: te_fully_connected_per_channel_s8.h. */
#include "te_fully_connected_per_channel_s8.h"

#include "te_common.h"

void te_fully_connected_per_channel_s8(const int8_t *input, const int8_t *weights,
                                       const int32_t *acc_init, int8_t *output,
                                       int32_t batches, int32_t in_features,
                                       int32_t out_features, const int32_t *out_mult,
                                       const int32_t *out_shift, int32_t output_offset,
                                       int32_t act_min, int32_t act_max)
{
    for (int32_t b = 0; b < batches; ++b) {
        const int8_t *x = input + (size_t)b * in_features;
        const int8_t *w = weights;
        for (int32_t o = 0; o < out_features; ++o, w += in_features) {
            int32_t acc = acc_init[o];
            for (int32_t i = 0; i < in_features; ++i) {
                acc += (int32_t)w[i] * (int32_t)x[i];
            }
            acc = te_mbqm(acc, out_mult[o], out_shift[o]) + output_offset;
            *output++ = (int8_t)te_clamp_i32(acc, act_min, act_max);
        }
    }
}
