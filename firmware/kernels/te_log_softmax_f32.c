/* te_log_softmax_f32.c - LOG_SOFTMAX in float32.  Contract in te_log_softmax_f32.h. */
#include <math.h>

#include "te_log_softmax_f32.h"

void te_log_softmax_f32(const float *in, float *out, int32_t outer, int32_t depth)
{
    int32_t i, c;
    for (i = 0; i < outer; i++) {
        const float *x = in + i * depth;
        float *y = out + i * depth;
        float m = x[0];
        float sum = 0.0f;
        float log_sum;
        for (c = 1; c < depth; c++) {
            m = x[c] > m ? x[c] : m;
        }
        for (c = 0; c < depth; c++) {
            sum += expf(x[c] - m);
        }
        log_sum = logf(sum);
        for (c = 0; c < depth; c++) {
            y[c] = x[c] - m - log_sum;
        }
    }
}
