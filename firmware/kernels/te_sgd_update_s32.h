/*
 * te_sgd_update_s32.h - one SGD step (optional momentum, quantization-aware scaling) on int32
 * biases, rounded back to int32, portable C99 (training update).
 */
#ifndef TE_SGD_UPDATE_S32_H
#define TE_SGD_UPDATE_S32_H

#include <stdint.h>

/*
 * Per channel c, in float32 (torch.optim.SGD's order, dampening 0, no weight decay):
 *   g = grad[c] * grad_scale[c]   (QAS: grad_scale[c] = (filter_scale[c] * input_scale)^-2;
 *                                  grad_scale NULL: g = grad[c])
 *   v = momentum * v + g;  velocity[c] = v;  g = v          (only when velocity != NULL)
 *   d = (-lr) * g
 *   bias[c] = bias[c] + round(d), ties to even, saturated to the int32 range
 * The step is rounded on its own (an int32 bias does not fit a float's 24-bit significand);
 * the sum is exact.
 *
 * Arguments
 *   bias        [n] int32 (TFLite's bias, in units of filter_scale * input_scale), in place.
 *   grad        [n] float32 (te_conv_2d_grad_bias_f32).
 *   grad_scale  [n] float32 or NULL.
 *   lr >= 0; momentum in [0, 1); velocity [n] float32 (zeroed before the first step) or NULL.
 * Scratch: none.
 */
void te_sgd_update_s32(int32_t *bias, int32_t n, const float *grad, const float *grad_scale,
                       float lr, float momentum, float *velocity);

#endif /* TE_SGD_UPDATE_S32_H */
