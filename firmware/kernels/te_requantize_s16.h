/*
 * te_requantize_s16 - QUANTIZE (requantize) int16 -> int16 (TFLite Micro reference Requantize).
 *
 * Contract:
 *   in        : int16_t, `size` elements; out: int16_t, `size` elements (elementwise).
 *               out may start at the same address as in (each element is read before it is
 *               written, at a lower or equal byte offset).
 *   in_zp, out_zp : zero points of input and output.
 *   mult, shift   : QuantizeMultiplier(in_scale / out_scale) (multiplier in [2^30, 2^31) or 0,
 *               shift in [-31, 30]; the ratio may exceed one).
 *   out = clamp(MultiplyByQuantizedMultiplier(x - in_zp, mult, shift) + out_zp).
 * No scratch memory.
 */
#ifndef TE_REQUANTIZE_S16_H
#define TE_REQUANTIZE_S16_H

#include "te_common.h"

void te_requantize_s16(const int16_t *in, int16_t *out, int32_t size, int32_t in_zp, int32_t out_zp,
                       int32_t mult, int32_t shift);

#endif /* TE_REQUANTIZE_S16_H */
