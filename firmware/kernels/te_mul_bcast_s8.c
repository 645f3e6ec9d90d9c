/* te_mul_bcast_s8.c - int8 MUL with broadcasting.  Contract in te_mul_bcast_s8.h. */
#include "te_mul_bcast_s8.h"

#include "te_index.h"

void te_mul_bcast_s8(const int8_t *in1, const int8_t *in2, int8_t *out, const int32_t *shape,
                     const int32_t *in1_strides, const int32_t *in2_strides,
                     int32_t in1_offset, int32_t in2_offset, int32_t out_offset,
                     int32_t out_mult, int32_t out_shift, int32_t act_min, int32_t act_max)
{
    /* rows of shape[5] elements over the outer 5 dimensions, walked with one index per input */
    const int32_t rows = shape[0] * shape[1] * shape[2] * shape[3] * shape[4];
    const int32_t n5 = shape[5];
    const int32_t a5 = in1_strides[5], b5 = in2_strides[5];
    int32_t idx1[5] = {0}, idx2[5] = {0};
    int32_t off1 = 0, off2 = 0;
    int32_t r, i;
    int8_t *o = out;
    for (r = 0; r < rows; r++) {
        const int8_t *a = in1 + off1;
        const int8_t *b = in2 + off2;
        for (i = 0; i < n5; i++) {
            o[i] = te_mul_elem_s8(a[i * a5], b[i * b5], in1_offset, in2_offset,
                                  out_offset, out_mult, out_shift, act_min, act_max);
        }
        o += n5;
        te_index_next(idx1, 5, shape, in1_strides, &off1);
        te_index_next(idx2, 5, shape, in2_strides, &off2);
    }
}
