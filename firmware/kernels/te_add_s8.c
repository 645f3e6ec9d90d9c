/* te_add_s8.c - int8 ADD, same-shape operands.  Contract in te_add_s8.h. */
#include "te_add_s8.h"

void te_add_s8(const int8_t *in1, const int8_t *in2, int8_t *out, int32_t size,
               int32_t in1_offset, int32_t in1_mult, int32_t in1_shift,
               int32_t in2_offset, int32_t in2_mult, int32_t in2_shift, int32_t left_shift,
               int32_t out_offset, int32_t out_mult, int32_t out_shift,
               int32_t act_min, int32_t act_max)
{
    int32_t i;
    for (i = 0; i < size; i++) {
        out[i] = te_add_elem_s8(in1[i], in2[i], in1_offset, in1_mult, in1_shift, in2_offset,
                                in2_mult, in2_shift, left_shift, out_offset, out_mult, out_shift,
                                act_min, act_max);
    }
}
