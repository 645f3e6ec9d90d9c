"""MEAN over any set of axes (int8), keep_dims true or false.

TensorFlow Lite Micro's reference int8 MEAN (reduce_common.cc -> QuantizedMeanOrSum) sums
the int8 values of each output element in int32, subtracts ``input_zp * count`` and
rescales with MultiplyByQuantizedMultiplier, where the multiplier of
``input_scale / output_scale`` has 1/count folded in at run time:
``shift = min(floor(log2(count)), 32, 31 + shift); mult = (mult << shift) / count;
shift -= shift``.  prepare() does that folding at compile time.

The reduction itself is compiled to a pair of strided index spaces: the kept dimensions
(walked in output order) and the reduced dimensions, each with neighbouring dimensions
merged where they are contiguous in the input.  The C kernel needs no scratch memory.
"""
from __future__ import annotations

import numpy as np

from tinyengine.ops import OpDef, register, unsupported
from tinyengine.ops.common import require_int8_to_int8
from tinyengine.quant import multiply_by_quantized_multiplier, quantize_multiplier, tflite_scale

MAX_DIMS = 6


def mean_multiplier(input_scale: float, output_scale: float, count: int) -> tuple:
    """reduce_common.cc PrepareSimple: QuantizeMultiplier((double)input_scale /
    (double)output_scale); then reference_ops::QuantizedMeanOrSum folds 1/count in:
    ``s = min(63 - clz(count), 32, 31 + shift)``, ``mult = (int64)mult << s / count``
    (C division: toward zero), ``shift -= s``."""
    mult, shift = quantize_multiplier(tflite_scale(input_scale) / tflite_scale(output_scale))
    if count <= 0:
        return mult, shift
    s = int(count).bit_length() - 1           # 63 - CountLeadingZeros(count)
    s = min(s, 32)
    s = min(s, 31 + shift)
    scaled = mult << s
    mult = int(abs(scaled) // count) * (1 if scaled >= 0 else -1)
    return mult, shift - s


def resolve_axes(axes, rank: int) -> list:
    out = []
    for a in np.atleast_1d(np.asarray(axes)).tolist():
        a = int(a) + rank if int(a) < 0 else int(a)
        if a not in out:
            out.append(a)
    return out


def _merge(dims: list) -> tuple:
    """Merge (size, stride) pairs whose iteration is contiguous; drop size-1 dims."""
    out: list = []
    for size, stride in dims:
        if size == 1:
            continue
        if out and out[-1][1] == size * stride:
            out[-1] = (out[-1][0] * size, stride)
        else:
            out.append((size, stride))
    if not out:
        out = [(1, 0)]
    return (np.array([d[0] for d in out], dtype=np.int32),
            np.array([d[1] for d in out], dtype=np.int32))


@register
class Mean(OpDef):
    name = "MEAN"
    template = "ops/mean.c.j2"
    kernels = ("te_mean_s8.c",)

    def check(self, node, graph):
        if len(node.inputs) != 2 or node.inputs[0] is None or node.inputs[1] is None:
            raise unsupported(node, "needs an input and a constant axis tensor")
        x, ax = graph.tensor(node.inputs[0]), graph.tensor(node.inputs[1])
        y = graph.tensor(node.outputs[0])
        require_int8_to_int8(node, x, y)
        if not ax.is_const or ax.dtype != "int32":
            raise unsupported(node, "the axis must be a constant int32 tensor")
        rank = len(x.shape)
        if rank > 5:
            raise unsupported(node, f"input rank {rank} (supported: up to 5)")
        for a in np.atleast_1d(ax.data).tolist():
            if not -rank <= int(a) < rank:
                raise unsupported(node, f"axis {a} is out of range for rank {rank}")
        axes = resolve_axes(ax.data, rank)
        count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64)) if axes else 1
        if y.size * count != x.size:
            raise unsupported(node, f"output shape {y.shape} does not match reducing {x.shape} "
                              f"over axes {axes}")

    def prepare(self, node, graph):
        x, ax = graph.tensor(node.inputs[0]), graph.tensor(node.inputs[1])
        y = graph.tensor(node.outputs[0])
        rank = len(x.shape)
        axes = resolve_axes(ax.data, rank)
        strides = [int(np.prod(x.shape[d + 1:], dtype=np.int64)) for d in range(rank)]
        keep = [(x.shape[d], strides[d]) for d in range(rank) if d not in axes]
        red = [(x.shape[d], strides[d]) for d in range(rank) if d in axes]
        keep_shape, keep_strides = _merge(keep)
        red_shape, red_strides = _merge(red)
        count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64)) if axes else 1
        mult, shift = mean_multiplier(x.quant.s, y.quant.s, count)
        return {
            "axes": np.array(axes, dtype=np.int32), "count": count,
            "keep_ndim": len(keep_shape), "keep_shape": keep_shape, "keep_strides": keep_strides,
            "red_ndim": len(red_shape), "red_shape": red_shape, "red_strides": red_strides,
            "in_zp": x.quant.zp, "out_zp": y.quant.zp, "mult": mult, "shift": shift,
            "out_size": y.size,
        }

    def reference(self, node, graph, inputs):
        y = graph.tensor(node.outputs[0])
        p = node.params
        x = np.asarray(inputs[0]).astype(np.int64)
        axes = tuple(int(a) for a in p["axes"])
        sums = x.sum(axis=axes) if axes else x
        shifted = sums - p["in_zp"] * p["count"]
        out = multiply_by_quantized_multiplier(shifted, p["mult"], p["shift"]) + p["out_zp"]
        return [np.clip(out, -128, 127).astype(np.int8).reshape(y.shape)]

