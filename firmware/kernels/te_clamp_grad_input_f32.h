/*
 * te_clamp_grad_input_f32.h - gradient through an int8 op's clamp (requantization saturation,
 * fused RELU / RELU6) from its 1-bit mask, float32, portable C99 (training backward).
 */
#ifndef TE_CLAMP_GRAD_INPUT_F32_H
#define TE_CLAMP_GRAD_INPUT_F32_H

#include <stdint.h>

/*
 * grad_in[i] = bit i of mask ? grad_out[i] : 0.0f      (mask from te_clamp_grad_mask_s8.h)
 *
 * Arguments
 *   grad_out  [n] float32: dL/d(op output).
 *   mask      [(n + 7) / 8] bytes, bit i at byte i / 8, bit i % 8.
 *   grad_in   [n] float32: dL/d(value before the clamp); may be grad_out itself (in place),
 *             must not overlap it otherwise.
 * Scratch: none.
 */
void te_clamp_grad_input_f32(const float *grad_out, const uint8_t *mask, int32_t n,
                             float *grad_in);

#endif /* TE_CLAMP_GRAD_INPUT_F32_H */
