/*
 * te_softmax_cross_entropy_grad_f32.h - softmax cross-entropy loss of int8 logits and its
 * gradient, float32, portable C99 (training: the head of the backward).
 */
#ifndef TE_SOFTMAX_CROSS_ENTROPY_GRAD_F32_H
#define TE_SOFTMAX_CROSS_ENTROPY_GRAD_F32_H

#include <stdint.h>

/*
 * On the dequantized logits x[b, i] = scale * (float)(logits[b, i] - zero_point), per row b:
 *   m = max_i x[b, i],  e_i = te_exp_f32(x[b, i] - m),  s = e_0 + e_1 + ... (in order),
 *   loss_b = te_log_f32(s) - (x[b, label_b] - m)                 (= -log softmax(x)[label_b])
 *   grad[b, i] = (e_i / s - (i == label_b ? 1 : 0)) / (float)batches
 * Returns the mean loss (loss_0 + loss_1 + ...) / (float)batches; grad = d(mean loss)/dx,
 * the gradient of torch.nn.functional.cross_entropy(x, labels).
 *
 * Arguments
 *   logits      [batches, classes] int8: the classifier's output as the forward left it.
 *   zero_point  in [-128, 127]; scale > 0: its quantization.
 *   labels      [batches] int32 in [0, classes).
 *   grad        [batches, classes] float32, overwritten.
 * Exp and log are te_exp_f32 / te_log_f32 (same bits on every target), never libm's.
 * Preconditions: batches, classes >= 1.
 * Scratch: none.
 */
float te_softmax_cross_entropy_grad_f32(const int8_t *logits, int32_t batches, int32_t classes,
                                        int32_t zero_point, float scale,
                                        const int32_t *labels, float *grad);

#endif /* TE_SOFTMAX_CROSS_ENTROPY_GRAD_F32_H */
