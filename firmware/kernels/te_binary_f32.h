/*
 * te_binary_f32 - ADD, SUB or MUL in float32, elementwise, with a fused activation's clamp, at
 * a model's edge (TensorFlow Lite Micro's float reference kernels).
 *
 * Contract:
 *   a, b, out : float, `size` elements each (a constant that broadcasts is stored broadcast
 *               to the output's shape by the compiler); out may alias a or b.
 *   op        : TE_BINARY_F32_ADD (a + b), TE_BINARY_F32_SUB (a - b), TE_BINARY_F32_MUL (a * b).
 *   act_min, act_max : the activation's range (-INFINITY / INFINITY for none);
 *   out = min(max(a op b, act_min), act_max).  Exact: one float32 operation per element.
 * No scratch memory.
 */
#ifndef TE_BINARY_F32_H
#define TE_BINARY_F32_H

#include <math.h>

#include "te_common.h"

#define TE_BINARY_F32_ADD 0
#define TE_BINARY_F32_SUB 1
#define TE_BINARY_F32_MUL 2

void te_binary_f32(const float *a, const float *b, float *out, int32_t size, int32_t op,
                   float act_min, float act_max);

#endif /* TE_BINARY_F32_H */
