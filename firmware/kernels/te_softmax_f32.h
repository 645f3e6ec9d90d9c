/*
 * te_softmax_f32 - SOFTMAX in float32 over the last axis, at a model's edge (after its last
 * DEQUANTIZE), as TensorFlow Lite Micro's float reference kernel computes it.
 *
 * Contract:
 *   in, out : float, outer x depth elements (rows of `depth`); out may alias in.
 *   beta    : the op's beta.
 *   Per row: m = max(x); e_c = expf((x_c - m) * beta); out_c = e_c / sum(e).
 *   Not bit-exact across libms (expf's last bits, the order of the sum): within
 *   FLOAT_RTOL / FLOAT_ATOL of tinyengine/ops/float_edge.py of TFLite Micro.
 * No scratch memory.
 */
#ifndef TE_SOFTMAX_F32_H
#define TE_SOFTMAX_F32_H

#include "te_common.h"

void te_softmax_f32(const float *in, float *out, int32_t outer, int32_t depth, float beta);

#endif /* TE_SOFTMAX_F32_H */
