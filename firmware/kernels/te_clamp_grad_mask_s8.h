/*
 * te_clamp_grad_mask_s8.h - the 1-bit mask of an int8 output's clamp, packed in the forward
 * for the backward, portable C99 (training forward).
 */
#ifndef TE_CLAMP_GRAD_MASK_S8_H
#define TE_CLAMP_GRAD_MASK_S8_H

#include <stdint.h>

/*
 * Every int8 op ends with clamp(., act_min, act_max): the requantization's saturation to
 * [-128, 127] narrowed by a fused RELU / RELU6 / RELU_N1_TO_1.  Its derivative is 1 where the
 * output lies strictly inside the bounds and 0 where it lies on one (a value on a bound
 * counts as clamped: the subgradient 0, as torch.nn.functional.hardtanh and relu).  One bit
 * per element replaces the 8-bit output the backward would otherwise have to keep:
 *
 * bit i of mask (byte i / 8, bit i % 8, least significant first) = act_min < output[i] < act_max
 *
 * Arguments
 *   output   [n] int8: the op's output, any layout (the mask follows its order).
 *   n >= 1; act_min <= act_max in [-128, 127]: the forward's clamp bounds.
 *   mask     [(n + 7) / 8] bytes, overwritten (bits past n are 0).
 * Overlap: the mask may not overlap the output.
 * Scratch: none.
 */
void te_clamp_grad_mask_s8(const int8_t *output, int32_t n, int32_t act_min, int32_t act_max,
                           uint8_t *mask);

#endif /* TE_CLAMP_GRAD_MASK_S8_H */
