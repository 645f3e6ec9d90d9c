/*
 * te_log_softmax_f32 - LOG_SOFTMAX in float32 over the last axis, at a model's edge (after its
 * last DEQUANTIZE), as TensorFlow Lite Micro's float reference kernel computes it.
 *
 * Contract:
 *   in, out : float, outer x depth elements (rows of `depth`); out may alias in.
 *   Per row: m = max(x); out_c = x_c - m - logf(sum(expf(x_c - m))).
 *   Not bit-exact across libms (expf / logf's last bits, the order of the sum): within
 *   FLOAT_RTOL / FLOAT_ATOL of tinyengine/ops/float_edge.py of TFLite Micro.
 * No scratch memory.
 */
#ifndef TE_LOG_SOFTMAX_F32_H
#define TE_LOG_SOFTMAX_F32_H

#include "te_common.h"

void te_log_softmax_f32(const float *in, float *out, int32_t outer, int32_t depth);

#endif /* TE_LOG_SOFTMAX_F32_H */
