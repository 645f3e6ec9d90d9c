/* te_resize_nearest_neighbor_s8.c - int8 nearest-neighbour resize, portable C99.
 * Contract: te_resize_nearest_neighbor_s8.h. */
#include "te_resize_nearest_neighbor_s8.h"

#include <stddef.h>

#include "te_move_s8.h"

void te_resize_nearest_neighbor_s8(const int8_t *input, int32_t batches, int32_t in_h,
                                   int32_t in_w, int32_t channels, int8_t *output,
                                   int32_t out_h, int32_t out_w, const int32_t *y_map,
                                   const int32_t *x_map)
{
    const size_t pixel = (size_t)channels;
    for (int32_t b = 0; b < batches; ++b) {
        const int8_t *in_b = input + (size_t)b * in_h * in_w * pixel;
        for (int32_t oy = 0; oy < out_h; ++oy) {
            const int8_t *row = in_b + (size_t)y_map[oy] * in_w * pixel;
            for (int32_t ox = 0; ox < out_w; ++ox) {
                te_move_s8(output, row + (size_t)x_map[ox] * pixel, channels);
                output += pixel;
            }
        }
    }
}
