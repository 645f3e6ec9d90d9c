/*
 * te_fold_bias_s32.h - a layer's bias, trained with its weights frozen, written into its fast
 * forward kernel's table after an update, portable C99 (training update).
 */
#ifndef TE_FOLD_BIAS_S32_H
#define TE_FOLD_BIAS_S32_H

#include <stdint.h>

/*
 * For c in [0, n):  table[(c / 4) * group + c % 4] = bias[c] + offset[c]
 * (int32, wrapping modulo 2^32; offset NULL: 0).  Returns the number of channels whose
 * written value v has |v| > limit (|INT32_MIN| is above every limit): 0 when the kernel
 * reading the table still computes the layer exactly, else the caller stops.  limit is the
 * layer's smallest channel bound (one word of Flash, not one per channel):
 *   te_conv_2d_1x1_s8_dsp / te_conv_2d_s8_dsp: table = acc_init, group 4 (table[c]),
 *     offset[c] = input_offset * sum of channel c's weights, limit = 2^30 - 1 - 128 *
 *     max_c sum |w[c]| (tables prepared for |acc| < 2^30, tinyengine's ACC_INIT_VARIES).
 *   te_depthwise_conv_2d_s8_dsp: table = its rq table, group 9 (per 4 channels: biases,
 *     multipliers, shifts), offset NULL (the kernel adds the input offset), limit =
 *     2^30 - 1 - 255 * max_c sum |w[c]| (its precondition).
 * Scratch: none.
 */
int32_t te_fold_bias_s32(int32_t *table, const int32_t *bias, const int32_t *offset,
                         int32_t limit, int32_t n, int32_t group);

#endif /* TE_FOLD_BIAS_S32_H */
