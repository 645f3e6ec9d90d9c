/* te_concatenation_s8.c - int8 concatenation, portable C99.
 * Contract: te_concatenation_s8.h. */
#include "te_concatenation_s8.h"

#include <stddef.h>

#include "te_move_s8.h"

void te_concatenation_s8(const int8_t *const *inputs, const int32_t *copy_sizes,
                         int32_t num_inputs, int32_t outer, int8_t *output)
{
    for (int32_t k = 0; k < outer; ++k) {
        for (int32_t i = 0; i < num_inputs; ++i) {
            const int32_t n = copy_sizes[i];
            te_move_s8(output, inputs[i] + (size_t)k * (size_t)n, n);
            output += n;
        }
    }
}
