/* te_exp_f32.c - exp in float32.  Contract: te_exp_f32.h. */
#include "te_exp_f32.h"

#include <stdint.h>

typedef union {
    float f;
    uint32_t u;
} te_exp_bits;

/* 2^k for -126 <= k <= 127. */
static float te_exp_pow2(int32_t k)
{
    te_exp_bits b;
    b.u = (uint32_t)(k + 127) << 23;
    return b.f;
}

float te_exp_f32(float x)
{
    const float log2e = 1.44269502f;
    const float ln2_hi = 0.693145751953125f; /* 15 significant bits: k * ln2_hi is exact */
    const float ln2_lo = 1.42860677e-06f;    /* ln2 - ln2_hi */
    if (x != x) {
        return x;
    }
    if (x > 88.7228394f) {
        te_exp_bits inf;
        inf.u = 0x7f800000u;
        return inf.f;
    }
    if (x < -87.0f) {
        return 0.0f;
    }
    const float t = x * log2e;
    const int32_t k = (int32_t)(t + (t >= 0.0f ? 0.5f : -0.5f));
    const float kf = (float)k;
    const float r = (x - kf * ln2_hi) - kf * ln2_lo;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r * r + r; /* r + r^2 (1/2 + r / 6 + ...) */
    p = 1.0f + p;
    if (k > 127) {
        return (p * 2.0f) * te_exp_pow2(127);
    }
    return p * te_exp_pow2(k);
}
