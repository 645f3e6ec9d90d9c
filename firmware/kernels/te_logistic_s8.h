/*
 * te_logistic_s8 - int8 LOGISTIC by table lookup.
 *
 * Contract:
 *   in, out   : int8, `size` elements (elementwise); out may be the same buffer as in.
 *   lut[256]  : output for each input code, indexed by (uint8_t)x, computed at compile time
 *               from TFLite Micro's reference int8 Logistic (Q4.27 input rescaling and
 *               gemmlowp::logistic) for the node's input quantization; output scale 1/256,
 *               zero point -128.
 * No scratch memory.
 * Overlap contract (TE_OVERLAP: elementwise): out[i] is written after in[i] is read, in
 *   increasing i, so out may start at (or before) an input of the same element size.
 */
#ifndef TE_LOGISTIC_S8_H
#define TE_LOGISTIC_S8_H

#include "te_common.h"

void te_logistic_s8(const int8_t *in, int8_t *out, int32_t size, const int8_t *lut);

#endif /* TE_LOGISTIC_S8_H */
