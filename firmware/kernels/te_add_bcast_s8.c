/* te_add_bcast_s8.c - int8 ADD with broadcasting.  Contract in te_add_bcast_s8.h. */
#include "te_add_bcast_s8.h"

void te_add_bcast_s8(const int8_t *in1, const int8_t *in2, int8_t *out, const int32_t *shape,
                     const int32_t *in1_strides, const int32_t *in2_strides,
                     int32_t in1_offset, int32_t in1_mult, int32_t in1_shift,
                     int32_t in2_offset, int32_t in2_mult, int32_t in2_shift, int32_t left_shift,
                     int32_t out_offset, int32_t out_mult, int32_t out_shift,
                     int32_t act_min, int32_t act_max)
{
    int32_t i0, i1, i2, i3, i4, i5;
    const int32_t n5 = shape[5];
    const int32_t a5 = in1_strides[5], b5 = in2_strides[5];
    int8_t *o = out;
    for (i0 = 0; i0 < shape[0]; i0++) {
        for (i1 = 0; i1 < shape[1]; i1++) {
            for (i2 = 0; i2 < shape[2]; i2++) {
                for (i3 = 0; i3 < shape[3]; i3++) {
                    for (i4 = 0; i4 < shape[4]; i4++) {
                        const int8_t *a = in1 + i0 * in1_strides[0] + i1 * in1_strides[1]
                                          + i2 * in1_strides[2] + i3 * in1_strides[3]
                                          + i4 * in1_strides[4];
                        const int8_t *b = in2 + i0 * in2_strides[0] + i1 * in2_strides[1]
                                          + i2 * in2_strides[2] + i3 * in2_strides[3]
                                          + i4 * in2_strides[4];
                        for (i5 = 0; i5 < n5; i5++) {
                            o[i5] = te_add_elem_s8(a[i5 * a5], b[i5 * b5], in1_offset, in1_mult,
                                                   in1_shift, in2_offset, in2_mult, in2_shift,
                                                   left_shift, out_offset, out_mult, out_shift,
                                                   act_min, act_max);
                        }
                        o += n5;
                    }
                }
            }
        }
    }
}
