/* te_logistic_f32.c - LOGISTIC in float32.  Contract in te_logistic_f32.h. */
#include <math.h>

#include "te_logistic_f32.h"

void te_logistic_f32(const float *in, float *out, int32_t size)
{
    const float upper = 16.619047164916992188f;
    const float lower = -9.0f;
    int32_t i;
    for (i = 0; i < size; i++) {
        const float x = in[i];
        if (x > upper) {
            out[i] = 1.0f;
        } else if (x < lower) {
            out[i] = expf(x);
        } else {
            out[i] = 1.0f / (1.0f + expf(-x));
        }
    }
}
