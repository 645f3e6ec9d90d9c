/*
 * te_sgd_update_s8.h - one SGD step (optional momentum, quantization-aware scaling) on int8
 * weights, rounded back to int8, portable C99 (training update).
 */
#ifndef TE_SGD_UPDATE_S8_H
#define TE_SGD_UPDATE_S8_H

#include <stdint.h>

/*
 * The weights are viewed as [outer, channels, inner] (CONV_2D / FULLY_CONNECTED OHWI:
 * outer 1, channels out_c, inner k_h * k_w * in_c; DEPTHWISE_CONV_2D [1, k_h, k_w, C]:
 * outer k_h * k_w, channels C, inner 1).  Only the selected channels c = channels[j] are
 * updated, with gradient entry [o, j, i] (the te_*_grad_weight_f32 layouts).  Per element,
 * in float32 (torch.optim.SGD's order, dampening 0, no weight decay):
 *   g = grad[o, j, i] * grad_scale[c]          (QAS: grad_scale[c] = filter_scale[c]^-2;
 *                                               grad_scale NULL: g = grad)
 *   v = momentum * v + g;  velocity[o, j, i] = v;  g = v       (only when velocity != NULL)
 *   w = (float)weights[o, c, i] + (-lr) * g
 *   weights[o, c, i] = w clamped to [-127, 127] and rounded to the nearest integer, ties to
 *                      even (TFLite's symmetric int8 weight range)
 *
 * Arguments
 *   weights     [outer, channels, inner] int8, updated in place.
 *   channels    [n_channels] distinct channels in [0, n_all), or NULL for all (n_channels ==
 *               n_all).
 *   grad        [outer, n_channels, inner] float32 (from the matching te_*_grad_weight_f32).
 *   grad_scale  [n_all] float32 per channel, or NULL.
 *   lr >= 0; momentum in [0, 1); velocity [outer, n_channels, inner] float32 (zeroed before
 *               the first step) or NULL for plain SGD.
 * Scratch: none.
 */
void te_sgd_update_s8(int8_t *weights, int32_t outer, int32_t n_all, int32_t inner,
                      const int32_t *channels, int32_t n_channels, const float *grad,
                      const float *grad_scale, float lr, float momentum, float *velocity);

#endif /* TE_SGD_UPDATE_S8_H */
