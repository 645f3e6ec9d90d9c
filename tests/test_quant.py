"""The scalar twin of TFLite's MultiplyByQuantizedMultiplier equals the array version."""
import numpy as np

from tinyengine.quant import (INT32_MAX, INT32_MIN, multiply_by_quantized_multiplier,
                              multiply_by_quantized_multiplier_int)


def test_scalar_mbqm_equals_the_array_version():
    rng = np.random.default_rng(3)
    edges = [INT32_MIN, INT32_MIN + 1, -(1 << 30), -1, 0, 1, 1 << 30, INT32_MAX]
    xs = edges + rng.integers(INT32_MIN, INT32_MAX, 3000, endpoint=True).tolist()
    ms = edges + rng.integers(INT32_MIN, INT32_MAX, 3000, endpoint=True).tolist()
    ss = [-40, -31, -1, 0, 1, 5] + rng.integers(-45, 8, 3000, endpoint=True).tolist()
    cases = [(x, m, s) for x in edges for m in edges for s in ss[:6]]
    cases += list(zip(xs, ms, ss))
    x, m, s = (np.array(c, dtype=np.int64) for c in zip(*cases))
    want = multiply_by_quantized_multiplier(x, m, s)
    got = [multiply_by_quantized_multiplier_int(*map(int, c)) for c in cases]
    assert got == [int(v) for v in want]
