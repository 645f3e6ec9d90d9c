"""Helpers shared by several op definitions: padding, activation bounds, validation.

Everything here follows TFLite's ``padding.h`` / ``kernel_util.cc`` exactly, so the
ops that use it agree with TensorFlow Lite Micro bit for bit.
"""
from __future__ import annotations

import numpy as np

from tinyengine.ops import unsupported
from tinyengine.quant import activation_range, wrap_int32

ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")


# -- SAME / VALID padding ----------------------------------------------------------------
def out_size(padding: str, in_size: int, k: int, stride: int, dilation: int = 1) -> int:
    """TFLite ComputeOutSize: the spatial output size of a window op."""
    eff = (k - 1) * dilation + 1
    if padding == "SAME":
        return (in_size + stride - 1) // stride
    if padding == "VALID":
        return (in_size + stride - eff) // stride
    raise ValueError(f"unknown padding {padding!r}")


def pad_before(stride: int, dilation: int, in_size: int, k: int, out: int) -> tuple:
    """TFLite ComputePaddingWithOffset: (pad_before, pad_after) of one spatial axis.

    The total is ``max((out - 1) * stride + (k - 1) * dilation + 1 - in, 0)``; the odd
    pixel of an odd total goes after (bottom / right).
    """
    eff = (k - 1) * dilation + 1
    total = max((out - 1) * stride + eff - in_size, 0)
    return total // 2, total - total // 2


def is_padding(padding) -> bool:
    """"SAME", "VALID", or explicit (top, bottom, left, right) pads (a folded PAD)."""
    if isinstance(padding, (tuple, list)):
        return len(padding) == 4 and all(int(v) >= 0 for v in padding)
    return padding in ("SAME", "VALID")


def window_geometry(padding, in_hw: tuple, k_hw: tuple, stride: tuple,
                    dilation: tuple = (1, 1)) -> dict:
    """TFLite ComputePaddingHeightWidth for a 2-D window op (conv, depthwise, pooling).

    ``padding`` is "SAME", "VALID" or explicit (top, bottom, left, right) pads: what the
    fold_pad pass leaves when it folds a PAD into its consumer (padded taps read the
    input zero point, as the PAD wrote).
    Returns ``out_h, out_w, pad_top, pad_bottom, pad_left, pad_right``.
    """
    if isinstance(padding, (tuple, list)):
        top, bottom, left, right = (int(v) for v in padding)
        eff_h = (k_hw[0] - 1) * dilation[0] + 1
        eff_w = (k_hw[1] - 1) * dilation[1] + 1
        return dict(out_h=(in_hw[0] + top + bottom - eff_h) // stride[0] + 1,
                    out_w=(in_hw[1] + left + right - eff_w) // stride[1] + 1,
                    pad_top=top, pad_bottom=bottom, pad_left=left, pad_right=right)
    out_h = out_size(padding, in_hw[0], k_hw[0], stride[0], dilation[0])
    out_w = out_size(padding, in_hw[1], k_hw[1], stride[1], dilation[1])
    top, bottom = pad_before(stride[0], dilation[0], in_hw[0], k_hw[0], out_h)
    left, right = pad_before(stride[1], dilation[1], in_hw[1], k_hw[1], out_w)
    return dict(out_h=out_h, out_w=out_w, pad_top=top, pad_bottom=bottom,
                pad_left=left, pad_right=right)


# -- fused activations ---------------------------------------------------------------------
def act_bounds(node, out_tensor) -> tuple:
    """CalculateActivationRangeQuantized for a node's fused activation (int8 output)."""
    act = node.attrs.get("activation", "NONE") or "NONE"
    if act not in ACTIVATIONS:
        raise unsupported(node, f"fused activation {act} (supported: {', '.join(ACTIVATIONS)})")
    q = out_tensor.quant
    return activation_range(act, float(q.scale[0]), int(q.zero_point[0]), out_tensor.dtype)


# -- validation helpers --------------------------------------------------------------------
def require_int8(node, graph, names: list, what: str = "tensor") -> None:
    """Every named tensor is int8 with per-tensor quantization."""
    for name in names:
        t = graph.tensor(name)
        if t.dtype != "int8":
            raise unsupported(node, f"{what} '{name}' is {t.dtype}; only int8 is supported")
        if t.quant is None:
            raise unsupported(node, f"{what} '{name}' has no quantization parameters")
        if t.quant.per_channel:
            raise unsupported(node, f"{what} '{name}' is quantized per channel; "
                                    "only per-tensor quantization is supported here")


def require_int8_io(node, graph) -> tuple:
    """Input 0 and output 0 are int8 per-tensor; returns their tensors."""
    require_int8(node, graph, [node.inputs[0]], "input")
    require_int8(node, graph, [node.outputs[0]], "output")
    return graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])


def require_int8_nhwc(node, graph) -> tuple:
    """As require_int8_io, and both are 4-D (NHWC)."""
    x, y = require_int8_io(node, graph)
    if len(x.shape) != 4 or len(y.shape) != 4:
        raise unsupported(node, "input and output must be 4-D (NHWC)")
    return x, y


def require_int8_to_int8(node, x, y) -> None:
    """Tensors x (input) and y (output) are both int8 with per-tensor quantization."""
    if x.dtype != "int8" or y.dtype != "int8":
        raise unsupported(node, f"dtypes {x.dtype} -> {y.dtype} (supported: int8 -> int8)")
    if x.quant is None or x.quant.per_channel or y.quant is None or y.quant.per_channel:
        raise unsupported(node, "input and output must be per-tensor quantized")


def unary_io(node, graph) -> tuple:
    """(input 0, output 0) of a one-input op; unsupported when that input is missing."""
    if len(node.inputs) < 1 or node.inputs[0] is None:
        raise unsupported(node, "needs one input tensor")
    return graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])


def require_const(node, graph, name, what: str) -> np.ndarray:
    if name is None:
        raise unsupported(node, f"missing {what}")
    t = graph.tensor(name)
    if not t.is_const:
        raise unsupported(node, f"{what} '{name}' must be a constant")
    return np.asarray(t.data)


def same_quant(a, b) -> bool:
    """Same per-tensor scale (compared as the float32 TFLite stores) and zero point."""
    return (np.float32(a.quant.scale[0]) == np.float32(b.quant.scale[0])
            and int(a.quant.zero_point[0]) == int(b.quant.zero_point[0]))


def fold_input_offset(bias, input_offset: int, weights, channel_axis: int) -> np.ndarray:
    """``acc_init[c] = bias[c] + input_offset * sum(weights of output channel c)``, int32-wrapped.

    Conv, depthwise and fully connected kernels start each accumulator from it, so their inner
    loop is a plain dot product of raw int8 values; the sums are equal modulo 2^32.
    """
    w = np.moveaxis(np.asarray(weights, dtype=np.int64), channel_axis, 0)
    wsum = w.reshape(w.shape[0], -1).sum(axis=1)
    b = 0 if bias is None else np.asarray(bias, dtype=np.int64)
    return wrap_int32(b + int(input_offset) * wsum)


def c_i32(values) -> np.ndarray:
    """A parameter array that codegen emits as ``static const int32_t``."""
    return np.ascontiguousarray(np.asarray(values, dtype=np.int64).astype(np.int32))
