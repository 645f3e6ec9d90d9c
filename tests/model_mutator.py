"""Rewrite the per-channel weight quantization of a .tflite model, in place in its bytes.

Models quantized by tools other than the TensorFlow converter may carry negative or tiny
per-channel weight scales.  These helpers turn any int8 model into such a one:

* :func:`negate_channels`: for a quarter of the output channels of every CONV_2D,
  DEPTHWISE_CONV_2D and per-channel FULLY_CONNECTED (all channels of a per-tensor layer,
  with ``per_tensor=True``), the weight scale, the weights, the bias and its scale change
  sign.  The real-valued model is unchanged (scale * weight is the same product), and so are
  TensorFlow Lite Micro's outputs: its multiplier of -r is minus that of r (std::round is
  symmetric; only a significand rounding to 2^31 differs) and MultiplyByQuantizedMultiplier
  depends on the accumulator and the multiplier only through their product.
  Channels holding a weight of -128 (whose negation is not an int8) are left alone.
* :func:`tiny_channels`: a few channels' weight scales become about 1e-10 (the effective
  multiplier then falls below 2^-31 and TFLite flushes it to 0), optionally with their
  weights zeroed; this changes the model, so compare against TFLM on the mutated file.

Both patch the flatbuffer's existing vectors (scales, weight buffers) and never change its
layout: the result is the same size and otherwise byte-identical.
"""
from __future__ import annotations

import numpy as np
import tflite

WEIGHTED_OPS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0}


def _builtin_names() -> dict:
    return {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}


def _weighted_layers(buf: bytearray):
    """Yield (op name, weight tensor, weight array view, channel axis, bias tensor or None,
    int32 bias view or None) for every weighted int8 op of subgraph 0 (the views write
    into ``buf``)."""
    model = tflite.Model.GetRootAsModel(buf, 0)
    names = _builtin_names()
    sg = model.Subgraphs(0)
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
        if name not in WEIGHTED_OPS or op.InputsLength() < 2:
            continue
        w_t = sg.Tensors(op.Inputs(1))
        if w_t.Type() != tflite.TensorType.INT8 or w_t.Quantization() is None:
            continue
        data = model.Buffers(w_t.Buffer()).DataAsNumpy()
        if isinstance(data, int):        # no data: not a constant
            continue
        w = data.view(np.int8).reshape(w_t.ShapeAsNumpy())
        b_t = sg.Tensors(op.Inputs(2)) if op.InputsLength() > 2 and op.Inputs(2) >= 0 else None
        b = None
        if b_t is not None and b_t.Type() == tflite.TensorType.INT32:
            bd = model.Buffers(b_t.Buffer()).DataAsNumpy()
            b = None if isinstance(bd, int) else bd.view("<i4")
        yield name, w_t, w, WEIGHTED_OPS[name], b_t, b


def _scales(t) -> np.ndarray:
    q = t.Quantization()
    s = q.ScaleAsNumpy() if q is not None else 0
    return s if not isinstance(s, int) else np.zeros(0, np.float32)


def negate_channels(data: bytes, fraction: float = 0.25, seed: int = 0,
                    per_tensor: bool = False, min_weight_every: int = 0) -> bytes:
    """The model with the weight scale, weights, bias and bias scale of ``fraction`` of each
    weighted layer's output channels negated (chosen at random with ``seed``; channels with a -128
    weight are skipped).  Per-tensor layers (one scale) are negated as a whole when
    ``per_tensor`` (every other such layer): TFLite Micro refuses that for FULLY_CONNECTED
    (GetQuantizedConvolutionMultipler: input scale * weight scale must be >= 0).
    ``min_weight_every`` = k > 0: then every k-th negated channel's first weight becomes -128
    (the model changes: compare with TFLM on the result), a negative channel whose sign no
    compiler can move into its int8 weights."""
    buf = bytearray(data)
    rng = np.random.default_rng(seed)
    flip_tensor = False
    for name, w_t, w, axis, b_t, b in _weighted_layers(buf):
        scale = _scales(w_t)
        wc = np.moveaxis(w, axis, 0)            # a view: [channels, ...]
        n = wc.shape[0]
        if scale.size == n and n > 1:
            pick = rng.permutation(n)[:max(1, int(round(fraction * n)))]
        elif scale.size == 1 and per_tensor:
            flip_tensor = not flip_tensor
            pick = np.arange(n) if flip_tensor else np.zeros(0, np.int64)
        else:
            continue
        pick = [c for c in pick.tolist() if wc[c].min() > -128
                and (b is None or b.size != n or b[c] != -(1 << 31))]
        if scale.size == 1 and len(pick) != n:
            continue                  # one scale: all channels or none
        bscale = _scales(b_t) if b_t is not None else np.zeros(0, np.float32)
        for c in pick:
            wc[c] = -wc[c]
            if b is not None and b.size == n:
                b[c] = -b[c]          # the accumulator's units change sign with the scale
            if scale.size == n:
                scale[c] = -scale[c]
            if bscale.size == n:
                bscale[c] = -bscale[c]
        if min_weight_every > 0:
            for c in pick[::min_weight_every]:
                wc[c][(0,) * wc[c].ndim] = -128
        if scale.size == 1 and pick:
            scale[0] = -scale[0]
            if bscale.size == 1:
                bscale[0] = -bscale[0]
    return bytes(buf)


def tiny_channels(data: bytes, every: int = 5, zero_weights: bool = False,
                  magnitude: float = 1e-10, seed: int = 0) -> bytes:
    """The model with every ``every``-th output channel (from a seeded offset) of each
    per-channel layer given a weight scale of about ``magnitude`` (sign kept; scaled by a
    random factor in [0.5, 4)), and all-zero weights if ``zero_weights``."""
    buf = bytearray(data)
    rng = np.random.default_rng(seed)
    for name, w_t, w, axis, b_t, b in _weighted_layers(buf):
        scale = _scales(w_t)
        wc = np.moveaxis(w, axis, 0)
        n = wc.shape[0]
        if scale.size != n or n < 2:
            continue
        for c in range(int(rng.integers(every)), n, every):
            scale[c] = np.float32(np.sign(scale[c]) or 1) * np.float32(
                magnitude * rng.uniform(0.5, 4.0))
            if zero_weights:
                wc[c] = 0
    return bytes(buf)


def weight_scales(data: bytes) -> list:
    """Each weighted layer's (op name, weight scales) - for the tests' own checks."""
    buf = bytearray(data)
    return [(name, np.array(_scales(w_t))) for name, w_t, _, _, _, _ in _weighted_layers(buf)]
