/* te_logistic_s8.c - int8 LOGISTIC (table lookup).  Contract in te_logistic_s8.h. */
#include "te_logistic_s8.h"

void te_logistic_s8(const int8_t *in, int8_t *out, int32_t size, const int8_t *lut)
{
    int32_t i;
    for (i = 0; i < size; i++) {
        out[i] = lut[(uint8_t)in[i]];
    }
}
