/*
 * te_requantize_s8 - QUANTIZE (requantize) int8 -> int8 (TFLite Micro reference Requantize).
 *
 * Contract:
 *   in        : int8_t, `size` elements; out: int8_t, `size` elements (elementwise).
 *               out may start at the same address as in (each element is read before it is
 *               written, at a lower or equal byte offset).
 *   in_zp, out_zp : zero points of input and output.
 *   mult, shift   : QuantizeMultiplier(in_scale / out_scale) (multiplier in [2^30, 2^31) or 0,
 *               shift in [-31, 30]; the ratio may exceed one).
 *   out = clamp(MultiplyByQuantizedMultiplier(x - in_zp, mult, shift) + out_zp).
 * No scratch memory.
 * Overlap contract (TE_OVERLAP: elementwise): out[i] is written after in[i] is read, in
 *   increasing i, so out may start at (or before) an input of the same element size.
 */
#ifndef TE_REQUANTIZE_S8_H
#define TE_REQUANTIZE_S8_H

#include "te_common.h"

void te_requantize_s8(const int8_t *in, int8_t *out, int32_t size, int32_t in_zp, int32_t out_zp,
                      int32_t mult, int32_t shift);

#endif /* TE_REQUANTIZE_S8_H */
