/*
 * te_resize_nearest_neighbor_s8.h - int8 nearest-neighbour resize, portable C99
 * (TFLite RESIZE_NEAREST_NEIGHBOR).
 *
 * Bit-exact with TensorFlow Lite Micro's reference_ops::ResizeNearestNeighbor: the source
 * coordinates (TFLite's float32 GetNearestNeighbor, with align_corners and
 * half_pixel_centers) are computed at compile time and passed as tables.
 */
#ifndef TE_RESIZE_NEAREST_NEIGHBOR_S8_H
#define TE_RESIZE_NEAREST_NEIGHBOR_S8_H

#include <stdint.h>

/*
 * output[b, oy, ox, c] = input[b, y_map[oy], x_map[ox], c]
 *
 * Arguments
 *   input   [batches, in_h, in_w, channels] int8, NHWC.
 *   output  [batches, out_h, out_w, channels] int8, NHWC.  Must not overlap input.
 *   y_map   [out_h] source rows, each in [0, in_h).
 *   x_map   [out_w] source columns, each in [0, in_w).
 * Scratch: none.
 */
void te_resize_nearest_neighbor_s8(const int8_t *input, int32_t batches, int32_t in_h,
                                   int32_t in_w, int32_t channels, int8_t *output,
                                   int32_t out_h, int32_t out_w, const int32_t *y_map,
                                   const int32_t *x_map);

#endif /* TE_RESIZE_NEAREST_NEIGHBOR_S8_H */
