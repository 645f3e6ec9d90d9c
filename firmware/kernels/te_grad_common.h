/*
 * te_grad_common.h - float32 helpers shared by the training kernels (te_*_grad_*_f32,
 * te_sgd_update_*), portable C99.
 *
 * Every operation is plain IEEE-754 single precision (no double, no libm), so that a host
 * build and a Cortex-M build compiled with -ffp-contract=off compute the same bits.
 */
#ifndef TE_GRAD_COMMON_H
#define TE_GRAD_COMMON_H

#include <stdint.h>

/* dst[0..n) = 0.0f (a loop, not memset: the firmware links no libc). */
static inline void te_zero_f32(float *dst, int32_t n)
{
    for (int32_t i = 0; i < n; ++i) {
        dst[i] = 0.0f;
    }
}

/* x rounded to the nearest integer, ties to even, for |x| <= 2^22 (adding and subtracting
 * 1.5 * 2^23 leaves no fraction bits; exact in round-to-nearest mode). */
static inline float te_round_half_even_f32(float x)
{
    const float magic = 12582912.0f; /* 1.5 * 2^23 */
    return (x + magic) - magic;
}

/* The output-channel index of selection entry j: channels[j], or j when channels is NULL. */
static inline int32_t te_selected(const int32_t *channels, int32_t j)
{
    return channels != 0 ? channels[j] : j;
}

#endif /* TE_GRAD_COMMON_H */
