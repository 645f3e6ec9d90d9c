/*
 * te_log_f32.h - natural logarithm in float32 arithmetic only, portable C99 (no libm).
 *
 * Used by the training kernels instead of logf, for the same reason as te_exp_f32.h: the
 * same bits on the host and on a Cortex-M (compiled with -ffp-contract=off).
 */
#ifndef TE_LOG_F32_H
#define TE_LOG_F32_H

/*
 * Returns ln(x) within 1 ulp of the correctly rounded value (checked on seeded samples by
 * tests/test_train_kernels.py) for every positive finite x, subnormals included; -inf for
 * +-0, NaN for x < 0 and NaN, +inf for +inf.
 * Method: x = m 2^e with sqrt(1/2) <= m < sqrt(2), f = m - 1 (exact), s = f / (2 + f);
 * ln(m) = 2 atanh(s) = f - (f^2/2 - s (f^2/2 + R)), R = sum_k 2 s^(2k) / (2k + 1) (five
 * terms, |s| <= 0.172); result e ln2_hi + (ln(m) + e ln2_lo).
 */
float te_log_f32(float x);

#endif /* TE_LOG_F32_H */
