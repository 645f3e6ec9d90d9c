/* te_softmax_f32.c - SOFTMAX in float32.  Contract in te_softmax_f32.h. */
#include <math.h>

#include "te_softmax_f32.h"

void te_softmax_f32(const float *in, float *out, int32_t outer, int32_t depth, float beta)
{
    int32_t i, c;
    for (i = 0; i < outer; i++) {
        const float *x = in + i * depth;
        float *y = out + i * depth;
        float m = x[0];
        float sum = 0.0f;
        for (c = 1; c < depth; c++) {
            m = x[c] > m ? x[c] : m;
        }
        for (c = 0; c < depth; c++) {
            y[c] = expf((x[c] - m) * beta);
            sum += y[c];
        }
        for (c = 0; c < depth; c++) {
            y[c] = y[c] / sum;
        }
    }
}
