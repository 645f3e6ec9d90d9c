/*
 * te_window.h - the clipped input window of a 2-D window op (portable C99).
 *
 * Pooling kernels read, for output row oy, input rows oy * stride - pad + [0, filter)
 * clipped to the image (padding is never read); likewise for columns.
 */
#ifndef TE_WINDOW_H
#define TE_WINDOW_H

#include "te_common.h"

/* Input span [*start, *end) of output index o along one axis, clipped to [0, in_size). */
static inline void te_window_span(int32_t o, int32_t stride, int32_t pad, int32_t filter,
                                  int32_t in_size, int32_t *start, int32_t *end)
{
    const int32_t i0 = o * stride - pad;
    *start = te_max_i32(0, i0);
    *end = te_min_i32(in_size, i0 + filter);
}

#endif /* TE_WINDOW_H */
