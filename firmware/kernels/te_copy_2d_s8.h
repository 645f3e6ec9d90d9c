/*
 * te_copy_2d_s8.h - copy a 2-D block of bytes between two row-strided buffers.
 *
 * Used by patch-based inference (tinyengine/patching.py): a patch's input region is cut
 * out of a whole tensor into a contiguous patch buffer (copy-in), and a patch's result is
 * put back into the whole tensor at its place (copy-out).  NHWC rows of w * c bytes.
 *
 * for r in [0, rows): dst[r * dst_stride + i] = src[r * src_stride + i], i in [0, row_bytes)
 *
 * Arguments
 *   src, dst       the first byte of the block in each buffer; must not overlap.
 *   src_stride, dst_stride  bytes from one row to the next, >= row_bytes.
 *   rows, row_bytes  >= 0.
 * Scratch: none.
 */
#ifndef TE_COPY_2D_S8_H
#define TE_COPY_2D_S8_H

#include <stdint.h>

void te_copy_2d_s8(const int8_t *src, int32_t src_stride, int8_t *dst, int32_t dst_stride,
                   int32_t rows, int32_t row_bytes);

#endif /* TE_COPY_2D_S8_H */
