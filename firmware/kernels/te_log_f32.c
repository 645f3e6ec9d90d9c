/* te_log_f32.c - natural logarithm in float32.  Contract: te_log_f32.h. */
#include "te_log_f32.h"

#include <stdint.h>

typedef union {
    float f;
    uint32_t u;
} te_log_bits;

float te_log_f32(float x)
{
    const float ln2_hi = 0.693145751953125f;
    const float ln2_lo = 1.42860677e-06f;
    te_log_bits b;
    b.f = x;
    if (x != x || b.u == 0x7f800000u) {
        return x; /* NaN, +inf */
    }
    if (x == 0.0f) {
        b.u = 0xff800000u; /* -inf */
        return b.f;
    }
    if (x < 0.0f) {
        b.u = 0x7fc00000u; /* NaN */
        return b.f;
    }
    int32_t e = 0;
    if ((b.u >> 23) == 0u) { /* subnormal: scale into the normal range first */
        b.f = x * 33554432.0f; /* 2^25 */
        e = -25;
    }
    e += (int32_t)(b.u >> 23) - 127;
    b.u = (b.u & 0x007fffffu) | 0x3f800000u; /* m in [1, 2) */
    if (b.f > 1.41421356f) {
        b.u -= 0x00800000u; /* m / 2 */
        e += 1;
    }
    const float f = b.f - 1.0f;
    const float s = f / (2.0f + f);
    const float z = s * s;
    float r = 2.0f / 11.0f;
    r = r * z + 2.0f / 9.0f;
    r = r * z + 2.0f / 7.0f;
    r = r * z + 2.0f / 5.0f;
    r = r * z + 2.0f / 3.0f;
    r = r * z;
    const float hfsq = 0.5f * f * f;
    const float log_m = f - (hfsq - s * (hfsq + r));
    const float ef = (float)e;
    return ef * ln2_hi + (log_m + ef * ln2_lo);
}
