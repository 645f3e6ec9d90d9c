/* te_pad_s8.c - int8 constant padding, portable C99.  Contract: te_pad_s8.h. */
#include "te_pad_s8.h"

#include <stddef.h>

#include "te_move_s8.h"

/* A byte loop (the project's -fno-tree-loop-distribute-patterns keeps it one, not memset). */
static void te_pad_fill(int8_t *dst, int8_t v, int32_t n)
{
    for (int32_t i = 0; i < n; ++i) {
        dst[i] = v;
    }
}

static int te_pad_inside(int32_t o, int32_t pad, int32_t in_dim)
{
    return o >= pad && o < pad + in_dim;
}

void te_pad_s8(const int8_t *input, int8_t *output, const int32_t *in_dims,
               const int32_t *out_dims, const int32_t *pad_before, int32_t pad_value)
{
    const int8_t v = (int8_t)pad_value;
    const int32_t row = out_dims[4];                  /* output row length */
    const int32_t before = pad_before[4];
    const int32_t copy = in_dims[4];
    const int32_t after = row - before - copy;
    for (int32_t o0 = 0; o0 < out_dims[0]; ++o0) {
        const int in0 = te_pad_inside(o0, pad_before[0], in_dims[0]);
        for (int32_t o1 = 0; o1 < out_dims[1]; ++o1) {
            const int in1 = in0 && te_pad_inside(o1, pad_before[1], in_dims[1]);
            for (int32_t o2 = 0; o2 < out_dims[2]; ++o2) {
                const int in2 = in1 && te_pad_inside(o2, pad_before[2], in_dims[2]);
                for (int32_t o3 = 0; o3 < out_dims[3]; ++o3, output += row) {
                    if (!(in2 && te_pad_inside(o3, pad_before[3], in_dims[3]))) {
                        te_pad_fill(output, v, row);
                        continue;
                    }
                    const size_t src =
                        ((((size_t)(o0 - pad_before[0]) * in_dims[1] + (o1 - pad_before[1]))
                              * in_dims[2] + (o2 - pad_before[2]))
                             * in_dims[3] + (o3 - pad_before[3]))
                        * in_dims[4];
                    te_pad_fill(output, v, before);
                    te_move_s8(output + before, input + src, copy);
                    te_pad_fill(output + before + copy, v, after);
                }
            }
        }
    }
}
