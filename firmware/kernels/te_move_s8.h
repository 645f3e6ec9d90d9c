/*
 * te_move_s8.h - move n bytes forward: the firmware's only byte copy (no libc memcpy /
 * memmove / memset is linked; the project is built with -fno-tree-loop-distribute-patterns
 * so that gcc does not turn copy or fill loops back into libc calls).
 *
 * for i in [0, n): dst[i] = src[i], in increasing i
 *
 * Arguments
 *   dst, src   any alignment.  They may overlap when dst <= src (a block of src is read
 *              before the same block of dst is written), e.g. the shift of a fused pair's
 *              row ring (tinyengine/fusion.py); otherwise they must not overlap.
 *   n          bytes, >= 0.
 * Cost on Cortex-M4/M7: LDM/STM of 16 bytes per 4 instructions while dst and src are both
 * word-aligned, then an unaligned LDR/STR per word and LDRB/STRB per byte (4 instructions
 * each); ~12 instructions per call.  Plain C elsewhere (the host build).
 * Scratch: none.
 */
#ifndef TE_MOVE_S8_H
#define TE_MOVE_S8_H

#include <stdint.h>

void te_move_s8(int8_t *dst, const int8_t *src, int32_t n);

#endif /* TE_MOVE_S8_H */
