/*
 * te_quantize_f32_s16 - QUANTIZE float32 -> int16 (TFLite Micro reference AffineQuantize).
 *
 * Contract:
 *   in        : float32, `size` elements; out: int16_t, `size` elements (elementwise).
 *               out may start at the same address as in (each output is written after its
 *               input, and at a lower or equal byte offset).
 *   scale     : the output scale as float32 (> 0); zero_point in [-32768, 32767].
 *   out = clamp(round_half_away_from_zero(x / scale) + zero_point), the division in
 *   float32 exactly as TFLite Micro does it.  NaN inputs give zero_point.
 * No scratch memory.
 */
#ifndef TE_QUANTIZE_F32_S16_H
#define TE_QUANTIZE_F32_S16_H

#include "te_quantize_f32_s8.h"   /* te_round_f32_to_i32 */

void te_quantize_f32_s16(const float *in, int16_t *out, int32_t size, float scale, int32_t zero_point);

#endif /* TE_QUANTIZE_F32_S16_H */
