"""Data-movement ops: PAD, PADV2, RESHAPE, TRANSPOSE, CONCATENATION, RESIZE_NEAREST_NEIGHBOR.

None of these changes a value: TFLite Micro copies the int8 bytes as they are (no
requantization), and so do these definitions.  Where TFLM silently mixes quantizations
(CONCATENATION of inputs with different scales) TinyEngine refuses instead.
"""
from __future__ import annotations

import numpy as np

from tinyengine.ops import OpDef, register, unsupported
from tinyengine.ops.common import (c_i32, require_const, require_int8, require_int8_io,
                                    require_int8_nhwc, same_quant)

PAD_MAX_DIMS = 5
TRANSPOSE_MAX_DIMS = 6


def _left_pad(values, n: int, fill: int) -> list:
    values = [int(v) for v in values]
    return [fill] * (n - len(values)) + values


# -- PAD / PADV2 ---------------------------------------------------------------------------
class _PadBase(OpDef):
    template = "ops/pad.c.j2"
    kernels = ("te_pad_s8.c", "te_move_s8.c")

    def _paddings(self, node, graph) -> np.ndarray:
        p = require_const(node, graph, node.inputs[1] if len(node.inputs) > 1 else None,
                          "paddings")
        return np.asarray(p, dtype=np.int64).reshape(-1, 2)

    def check(self, node, graph) -> None:
        x, y = require_int8_io(node, graph)
        pads = self._paddings(node, graph)
        if len(x.shape) > PAD_MAX_DIMS:
            raise unsupported(node, f"{len(x.shape)}-D input (at most {PAD_MAX_DIMS}-D)")
        if pads.shape[0] != len(x.shape):
            raise unsupported(node, f"paddings has {pads.shape[0]} rows for a "
                                    f"{len(x.shape)}-D input")
        if np.any(pads < 0):
            raise unsupported(node, "negative paddings")
        want = tuple(int(d + a + b) for d, (a, b) in zip(x.shape, pads))
        if tuple(y.shape) != want:
            raise unsupported(node, f"output shape {y.shape}, paddings give {want}")

    def _pad_value(self, node, graph) -> int:
        return int(graph.tensor(node.outputs[0]).quant.zero_point[0])

    def prepare(self, node, graph) -> dict:
        x = graph.tensor(node.inputs[0])
        y = graph.tensor(node.outputs[0])
        pads = self._paddings(node, graph)
        return dict(in_dims=c_i32(_left_pad(x.shape, PAD_MAX_DIMS, 1)),
                    out_dims=c_i32(_left_pad(y.shape, PAD_MAX_DIMS, 1)),
                    pad_before=c_i32(_left_pad(pads[:, 0], PAD_MAX_DIMS, 0)),
                    pad_value=self._pad_value(node, graph))

    def reference(self, node, graph, inputs: list) -> list:
        x = inputs[0]
        pads = self._paddings(node, graph)
        y = np.pad(x, [(int(a), int(b)) for a, b in pads],
                   constant_values=np.int8(self._pad_value(node, graph)))
        return [y.astype(np.int8)]


@register
class Pad(_PadBase):
    """PAD: the padding value is the output zero point (a real 0).  Kernel: te_pad_s8."""

    name = "PAD"


@register
class PadV2(_PadBase):
    """PADV2: the padding value is the constant_values scalar (int8, output quantization)."""

    name = "PADV2"

    def check(self, node, graph) -> None:
        super().check(node, graph)
        name = node.inputs[2] if len(node.inputs) > 2 else None
        if name is None:
            return
        v = require_const(node, graph, name, "constant_values")
        t = graph.tensor(name)
        if t.dtype != "int8" or v.size != 1:
            raise unsupported(node, f"constant_values must be one int8 value (got {t.dtype} "
                                    f"{t.shape})")
        if t.quant is None or not same_quant(t, graph.tensor(node.outputs[0])):
            raise unsupported(node, "constant_values must have the output's scale and zero "
                                    "point (as TFLite Micro requires)")

    def _pad_value(self, node, graph) -> int:
        name = node.inputs[2] if len(node.inputs) > 2 else None
        if name is None:
            return super()._pad_value(node, graph)
        return int(np.asarray(graph.tensor(name).data).reshape(-1)[0])


# -- RESHAPE -------------------------------------------------------------------------------
@register
class Reshape(OpDef):
    """RESHAPE: a byte copy, or nothing when codegen places output and input together.

    The template receives ``same_buffer`` (bool) from codegen; when it is true the call
    renders to a comment only.  Otherwise it is a ``te_move_s8`` of the whole tensor (codegen
    adds te_move_s8.c where a template calls it: ``codegen.TEMPLATE_HELPERS``).
    """

    name = "RESHAPE"
    template = "ops/reshape.c.j2"
    kernels = ()
    inplace = True

    def check(self, node, graph) -> None:
        x = graph.tensor(node.inputs[0])
        y = graph.tensor(node.outputs[0])
        if x.dtype != y.dtype or x.size != y.size:
            raise unsupported(node, f"{x.dtype} {x.shape} -> {y.dtype} {y.shape}: element "
                                    "count and type must stay the same")

    def prepare(self, node, graph) -> dict:
        return dict(nbytes=graph.tensor(node.outputs[0]).nbytes)

    def reference(self, node, graph, inputs: list) -> list:
        y = graph.tensor(node.outputs[0])
        return [np.asarray(inputs[0]).reshape(y.shape).copy()]


# -- TRANSPOSE -----------------------------------------------------------------------------
@register
class Transpose(OpDef):
    """TRANSPOSE, up to 6-D, any permutation.  Kernel: te_transpose_s8."""

    name = "TRANSPOSE"
    template = "ops/transpose.c.j2"
    kernels = ("te_transpose_s8.c",)

    def _perm(self, node, graph) -> list:
        p = require_const(node, graph, node.inputs[1] if len(node.inputs) > 1 else None, "perm")
        rank = len(graph.tensor(node.inputs[0]).shape)
        return [int(v) % rank if rank else 0 for v in np.asarray(p).reshape(-1)]

    def check(self, node, graph) -> None:
        x, y = require_int8_io(node, graph)
        rank = len(x.shape)
        if rank > TRANSPOSE_MAX_DIMS:
            raise unsupported(node, f"{rank}-D input (at most {TRANSPOSE_MAX_DIMS}-D)")
        perm = self._perm(node, graph)
        if sorted(perm) != list(range(rank)):
            raise unsupported(node, f"perm {perm} is not a permutation of {rank} axes")
        want = tuple(x.shape[p] for p in perm)
        if tuple(y.shape) != want:
            raise unsupported(node, f"output shape {y.shape}, perm gives {want}")

    def prepare(self, node, graph) -> dict:
        x = graph.tensor(node.inputs[0])
        y = graph.tensor(node.outputs[0])
        perm = self._perm(node, graph)
        in_strides = [int(np.prod(x.shape[i + 1:])) for i in range(len(x.shape))]
        strides = [in_strides[p] for p in perm]     # input step for each output axis
        n = TRANSPOSE_MAX_DIMS
        return dict(out_dims=c_i32(_left_pad(y.shape, n, 1)),
                    in_strides=c_i32(_left_pad(strides, n, 0)))

    def reference(self, node, graph, inputs: list) -> list:
        return [np.ascontiguousarray(np.transpose(inputs[0], self._perm(node, graph)))]


# -- CONCATENATION -------------------------------------------------------------------------
@register
class Concatenation(OpDef):
    """CONCATENATION along any axis of any number of int8 inputs.  Kernel:
    te_concatenation_s8.  TFLM copies bytes without requantizing, so every input must
    already have the output's scale and zero point; TinyEngine rejects models where they
    differ.  TFLM also requires the fused activation to be NONE.
    """

    name = "CONCATENATION"
    template = "ops/concatenation.c.j2"
    kernels = ("te_concatenation_s8.c", "te_move_s8.c")

    @staticmethod
    def _axis(node, graph) -> int:
        """The concatenation axis, made non-negative."""
        axis = int(node.attrs.get("axis", 0))
        rank = len(graph.tensor(node.outputs[0]).shape)
        return axis + rank if axis < 0 else axis

    def check(self, node, graph) -> None:
        names = [n for n in node.inputs if n is not None]
        if not names:
            raise unsupported(node, "no inputs")
        require_int8(node, graph, names, "input")
        require_int8(node, graph, [node.outputs[0]], "output")
        y = graph.tensor(node.outputs[0])
        act = node.attrs.get("activation", "NONE") or "NONE"
        if act != "NONE":
            raise unsupported(node, f"fused activation {act} (TFLite Micro supports only NONE)")
        axis = self._axis(node, graph)
        rank = len(y.shape)
        if not 0 <= axis < rank:
            raise unsupported(node, f"axis {axis} out of range for a {rank}-D output")
        total = 0
        for n in names:
            t = graph.tensor(n)
            if len(t.shape) != rank or any(t.shape[d] != y.shape[d]
                                           for d in range(rank) if d != axis):
                raise unsupported(node, f"input '{n}' {t.shape} does not fit output {y.shape} "
                                        f"on axis {axis}")
            if not same_quant(t, y):
                raise unsupported(node, f"input '{n}' has scale {t.quant.scale[0]:g} / zero "
                                        f"point {t.quant.zero_point[0]}, the output "
                                        f"{y.quant.scale[0]:g} / {y.quant.zero_point[0]}: "
                                        "int8 concatenation needs equal quantization (TFLite "
                                        "Micro would copy without requantizing)")
            total += t.shape[axis]
        if total != y.shape[axis]:
            raise unsupported(node, f"inputs add up to {total} on axis {axis}, output has "
                                    f"{y.shape[axis]}")

    def prepare(self, node, graph) -> dict:
        y = graph.tensor(node.outputs[0])
        axis = self._axis(node, graph)
        inner = int(np.prod(y.shape[axis + 1:]))
        sizes = [graph.tensor(n).shape[axis] * inner for n in node.inputs if n is not None]
        return dict(num_inputs=len(sizes), outer=int(np.prod(y.shape[:axis])),
                    copy_sizes=c_i32(sizes))

    def reference(self, node, graph, inputs: list) -> list:
        axis = self._axis(node, graph)
        return [np.concatenate([x for x in inputs if x is not None], axis=axis)]


# -- RESIZE_NEAREST_NEIGHBOR -----------------------------------------------------------------
def nearest_indices(in_size: int, out_size: int, align_corners: bool,
                    half_pixel_centers: bool) -> np.ndarray:
    """TFLite GetNearestNeighbor for every output coordinate, in float32 like the C++."""
    f32 = np.float32
    if align_corners and out_size > 1:
        scale = f32(in_size - 1) / f32(out_size - 1)
    else:
        scale = f32(in_size) / f32(out_size)
    offset = f32(0.5) if half_pixel_centers else f32(0.0)
    idx = []
    for i in range(out_size):
        v = f32(f32(i) + offset) * scale               # float32 product, as in C++
        if align_corners:
            r = int(np.sign(v) * np.floor(np.abs(np.float64(v)) + 0.5))   # TfLiteRound
        else:
            r = int(np.floor(v))
        r = min(r, in_size - 1)
        if half_pixel_centers:
            r = max(0, r)
        idx.append(r)
    return np.array(idx, dtype=np.int64)


@register
class ResizeNearestNeighbor(OpDef):
    """RESIZE_NEAREST_NEIGHBOR (NHWC).  The source row / column of every output row /
    column is computed at compile time (TFLite's float32 rule) and passed as tables.
    Kernel: te_resize_nearest_neighbor_s8.
    """

    name = "RESIZE_NEAREST_NEIGHBOR"
    template = "ops/resize_nearest_neighbor.c.j2"
    kernels = ("te_resize_nearest_neighbor_s8.c", "te_move_s8.c")

    def check(self, node, graph) -> None:
        x, y = require_int8_nhwc(node, graph)
        if y.shape[0] != x.shape[0] or y.shape[3] != x.shape[3]:
            raise unsupported(node, f"{x.shape} -> {y.shape}: batch and channels must match")
        if len(node.inputs) > 1 and node.inputs[1] is not None:
            size = graph.tensor(node.inputs[1])
            if size.is_const and [int(v) for v in np.asarray(size.data).reshape(-1)] \
                    != list(y.shape[1:3]):
                raise unsupported(node, f"size {np.asarray(size.data).tolist()} disagrees "
                                        f"with the output shape {y.shape}")

    def _maps(self, node, graph) -> tuple:
        x = graph.tensor(node.inputs[0])
        y = graph.tensor(node.outputs[0])
        ac = bool(node.attrs.get("align_corners", False))
        hp = bool(node.attrs.get("half_pixel_centers", False))
        return (nearest_indices(x.shape[1], y.shape[1], ac, hp),
                nearest_indices(x.shape[2], y.shape[2], ac, hp))

    def prepare(self, node, graph) -> dict:
        x = graph.tensor(node.inputs[0])
        y = graph.tensor(node.outputs[0])
        y_map, x_map = self._maps(node, graph)
        return dict(batches=x.shape[0], in_h=x.shape[1], in_w=x.shape[2], channels=x.shape[3],
                    out_h=y.shape[1], out_w=y.shape[2], y_map=c_i32(y_map), x_map=c_i32(x_map))

    def reference(self, node, graph, inputs: list) -> list:
        y_map, x_map = self._maps(node, graph)
        return [np.ascontiguousarray(inputs[0][:, y_map][:, :, x_map])]
