/* te_copy_2d_s8.c - row-strided block copy.  Contract: te_copy_2d_s8.h. */
#include "te_copy_2d_s8.h"

#include <stddef.h>

#include "te_move_s8.h"

void te_copy_2d_s8(const int8_t *src, int32_t src_stride, int8_t *dst, int32_t dst_stride,
                   int32_t rows, int32_t row_bytes)
{
    for (int32_t r = 0; r < rows; ++r) {
        te_move_s8(dst + (size_t)r * dst_stride, src + (size_t)r * src_stride, row_bytes);
    }
}
