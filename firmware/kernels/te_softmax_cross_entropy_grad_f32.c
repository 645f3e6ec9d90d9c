/* te_softmax_cross_entropy_grad_f32.c - softmax cross-entropy loss and gradient.
 * Contract: te_softmax_cross_entropy_grad_f32.h. */
#include "te_softmax_cross_entropy_grad_f32.h"

#include "te_exp_f32.h"
#include "te_log_f32.h"

float te_softmax_cross_entropy_grad_f32(const int8_t *logits, int32_t batches, int32_t classes,
                                        int32_t zero_point, float scale,
                                        const int32_t *labels, float *grad)
{
    const float n = (float)batches;
    float total = 0.0f;
    for (int32_t b = 0; b < batches; ++b, logits += classes, grad += classes) {
        float m = scale * (float)(logits[0] - zero_point);
        for (int32_t i = 1; i < classes; ++i) {
            const float x = scale * (float)(logits[i] - zero_point);
            m = x > m ? x : m;
        }
        float s = 0.0f;
        for (int32_t i = 0; i < classes; ++i) {
            grad[i] = te_exp_f32(scale * (float)(logits[i] - zero_point) - m);
            s += grad[i];
        }
        const int32_t label = labels[b];
        total += te_log_f32(s) - (scale * (float)(logits[label] - zero_point) - m);
        for (int32_t i = 0; i < classes; ++i) {
            grad[i] = (grad[i] / s - (i == label ? 1.0f : 0.0f)) / n;
        }
    }
    return total / n;
}
