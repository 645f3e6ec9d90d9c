/* te_transpose_s8.c - int8 transpose, portable C99.  Contract: te_transpose_s8.h. */
#include "te_transpose_s8.h"

#include <stddef.h>

void te_transpose_s8(const int8_t *input, int8_t *output, const int32_t *out_dims,
                     const int32_t *in_strides)
{
    for (int32_t i0 = 0; i0 < out_dims[0]; ++i0) {
        const int8_t *p0 = input + (ptrdiff_t)i0 * in_strides[0];
        for (int32_t i1 = 0; i1 < out_dims[1]; ++i1) {
            const int8_t *p1 = p0 + (ptrdiff_t)i1 * in_strides[1];
            for (int32_t i2 = 0; i2 < out_dims[2]; ++i2) {
                const int8_t *p2 = p1 + (ptrdiff_t)i2 * in_strides[2];
                for (int32_t i3 = 0; i3 < out_dims[3]; ++i3) {
                    const int8_t *p3 = p2 + (ptrdiff_t)i3 * in_strides[3];
                    for (int32_t i4 = 0; i4 < out_dims[4]; ++i4) {
                        const int8_t *p4 = p3 + (ptrdiff_t)i4 * in_strides[4];
                        const int32_t s5 = in_strides[5];
                        for (int32_t i5 = 0; i5 < out_dims[5]; ++i5) {
                            *output++ = p4[(ptrdiff_t)i5 * s5];
                        }
                    }
                }
            }
        }
    }
}
