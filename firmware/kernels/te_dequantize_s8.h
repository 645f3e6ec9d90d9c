/*
 * te_dequantize_s8 - DEQUANTIZE int8 -> float32 (TFLite Micro reference Dequantize).
 *
 * Contract:
 *   in        : int8_t, `size` elements; out: float32, `size` elements (elementwise).
 *               out must not alias in.
 *   scale     : the input scale as float32; zero_point: the input zero point.
 *   out = scale * (float)(x - zero_point) in float32.  TFLite Micro computes the product in
 *   double and rounds it to float once; the product of a float32 and an integer below 2^24
 *   is exact in double, so the single float32 multiplication gives the same bits (and needs
 *   no double arithmetic on a single-precision FPU).
 * No scratch memory.
 */
#ifndef TE_DEQUANTIZE_S8_H
#define TE_DEQUANTIZE_S8_H

#include "te_common.h"

void te_dequantize_s8(const int8_t *in, float *out, int32_t size, float scale, int32_t zero_point);

#endif /* TE_DEQUANTIZE_S8_H */
