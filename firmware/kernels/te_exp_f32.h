/*
 * te_exp_f32.h - exp(x) in float32 arithmetic only, portable C99 (no libm).
 *
 * The training kernels (te_softmax_cross_entropy_grad_f32.h) use it instead of expf: glibc's
 * and newlib's expf need not agree on the last bit, this one gives the same bits on every
 * IEEE-754 single-precision target when compiled with -ffp-contract=off.
 */
#ifndef TE_EXP_F32_H
#define TE_EXP_F32_H

/*
 * Returns e^x within 1 ulp of the correctly rounded value (tests/test_train_kernels.py checks
 * seeded samples over the whole range)
 * for -87 <= x <= 88.72; +inf above 88.7228394 (overflow), 0.0f below -87 (results under
 * 1.7e-38 are flushed to zero: no subnormal results), NaN for NaN.
 * Method: x = k ln2 + r with |r| <= ln2 / 2 (ln2 split in two parts so k * ln2_hi is exact),
 * e^r by its Taylor polynomial of degree 7 (truncation below 0.15 ulp), times 2^k built in the
 * exponent bits.
 */
float te_exp_f32(float x);

#endif /* TE_EXP_F32_H */
