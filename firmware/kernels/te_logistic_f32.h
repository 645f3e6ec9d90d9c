/*
 * te_logistic_f32 - LOGISTIC (sigmoid) in float32, elementwise, at a model's edge, as
 * TensorFlow Lite Micro's float reference kernel computes it.
 *
 * Contract:
 *   in, out : float, `size` elements; out may alias in.
 *   out = 1 for x > 16.619047, expf(x) for x < -9, else 1 / (1 + expf(-x)).
 *   Within FLOAT_RTOL / FLOAT_ATOL of tinyengine/ops/float_edge.py of TFLite Micro (expf's
 *   last bits differ between libms).
 * No scratch memory.
 */
#ifndef TE_LOGISTIC_F32_H
#define TE_LOGISTIC_F32_H

#include "te_common.h"

void te_logistic_f32(const float *in, float *out, int32_t size);

#endif /* TE_LOGISTIC_F32_H */
