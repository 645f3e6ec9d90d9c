/*
 * te_tanh_f32 - TANH in float32, elementwise, at a model's edge (TensorFlow Lite Micro's
 * float reference kernel: std::tanh).
 *
 * Contract:
 *   in, out : float, `size` elements; out may alias in.
 *   out = tanhf(x); within FLOAT_RTOL / FLOAT_ATOL of tinyengine/ops/float_edge.py of TFLite
 *   Micro (tanhf's last bits differ between libms).
 * No scratch memory.
 */
#ifndef TE_TANH_F32_H
#define TE_TANH_F32_H

#include "te_common.h"

void te_tanh_f32(const float *in, float *out, int32_t size);

#endif /* TE_TANH_F32_H */
