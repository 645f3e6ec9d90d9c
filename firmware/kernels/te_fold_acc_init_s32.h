/*
 * te_fold_acc_init_s32.h - a trained layer's accumulator start, folded again after an update,
 * portable C99 (training update).
 */
#ifndef TE_FOLD_ACC_INIT_S32_H
#define TE_FOLD_ACC_INIT_S32_H

#include <stdint.h>

/*
 * The forward kernels (te_conv_2d_s8, te_depthwise_conv_2d_s8, te_fully_connected_s8,
 * te_fully_connected_per_channel_s8) start channel c's accumulator at
 *   acc_init[c] = bias[c] + input_offset * sum over o, i of weights[o][c][i]
 * (int32 arithmetic, wrapping modulo 2^32, as tinyengine folds it at compile time).  A layer
 * whose bias or weights the firmware trains calls this after their SGD updates, so that its
 * next forward sees them.
 *
 * Arguments
 *   acc_init     [n_all] int32, overwritten.
 *   bias         [n_all] int32, or NULL (a layer without bias).
 *   weights      int8 viewed as [outer][n_all][inner] (CONV_2D / FULLY_CONNECTED: outer 1,
 *                inner the filter size; DEPTHWISE_CONV_2D: outer the filter taps, inner 1).
 *   input_offset the negated zero point of the layer's input.
 * Scratch: none.
 */
void te_fold_acc_init_s32(int32_t *acc_init, const int32_t *bias, const int8_t *weights,
                          int32_t outer, int32_t n_all, int32_t inner, int32_t input_offset);

#endif /* TE_FOLD_ACC_INIT_S32_H */
