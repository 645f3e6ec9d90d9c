/*
 * te_index.h - strided walk of a row-major multi-index (portable C99).
 *
 * Kernels that visit an index space described at compile time by shape[] and per-operand
 * element strides[] (broadcasting, reductions) step through it with te_index_next
 * instead of one nested loop per dimension.  Nothing here allocates memory.
 */
#ifndef TE_INDEX_H
#define TE_INDEX_H

#include <stdint.h>

/*
 * Steps idx[0..ndim) (last dimension fastest, 0 <= idx[d] < shape[d]) to the next index
 * and moves *offset by the matching strides[] (element strides of the walked operand).
 * Returns 1, or 0 after the last index, when idx and *offset are back at the first one.
 */
static inline int te_index_next(int32_t *idx, int32_t ndim, const int32_t *shape,
                                const int32_t *strides, int32_t *offset)
{
    int32_t d;
    for (d = ndim - 1; d >= 0; d--) {
        *offset += strides[d];
        if (++idx[d] < shape[d]) {
            return 1;
        }
        *offset -= shape[d] * strides[d];
        idx[d] = 0;
    }
    return 0;
}

#endif /* TE_INDEX_H */
