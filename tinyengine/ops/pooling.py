"""AVERAGE_POOL_2D and MAX_POOL_2D (int8, NHWC).

TFLite Micro's reference kernels (``reference_integer_ops::AveragePool`` / ``MaxPool``)
look only at the in-bounds part of each window (padding is never read):

* average: ``acc = sum``, ``count = number of in-bounds pixels``, then
  ``acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count`` with C's
  truncating division (round half away from zero), then the activation clamp;
* max: the maximum of the in-bounds pixels (starting from -128), then the clamp.

There is no requantization: the output is read in the input's quantization, as TFLM
does (the converter always gives both the same parameters).
"""
from __future__ import annotations

import numpy as np

from tinyengine.ops import OpDef, register, unsupported
from tinyengine.ops.common import act_bounds, is_padding, require_int8_nhwc, window_geometry


def _pair(v) -> tuple:
    if isinstance(v, (int, np.integer)):
        return (int(v), int(v))
    return (int(v[0]), int(v[1]))


class _PoolBase(OpDef):
    def _attrs(self, node) -> tuple:
        a = node.attrs
        return a.get("padding", "VALID"), _pair(a.get("stride", 1)), _pair(a.get("filter", 1))

    def _geometry(self, node, graph) -> dict:
        x = graph.tensor(node.inputs[0])
        padding, stride, filt = self._attrs(node)
        return window_geometry(padding, x.shape[1:3], filt, stride)

    def check(self, node, graph) -> None:
        x, y = require_int8_nhwc(node, graph)
        padding, stride, filt = self._attrs(node)
        if not is_padding(padding):
            raise unsupported(node, f"padding {padding!r} (SAME or VALID)")
        if min(stride) < 1 or min(filt) < 1:
            raise unsupported(node, f"stride {stride} and filter {filt} must be >= 1")
        g = self._geometry(node, graph)
        want = (x.shape[0], g["out_h"], g["out_w"], x.shape[3])
        if tuple(y.shape) != want:
            raise unsupported(node, f"output shape {y.shape}, the attributes give {want}")
        # every window must see at least one pixel (TFLM fails the op otherwise)
        if g["pad_top"] >= filt[0] or g["pad_left"] >= filt[1] \
                or g["pad_bottom"] >= filt[0] or g["pad_right"] >= filt[1]:
            raise unsupported(node, "a pooling window lies entirely in the padding")
        act_bounds(node, y)

    def prepare(self, node, graph) -> dict:
        x = graph.tensor(node.inputs[0])
        y = graph.tensor(node.outputs[0])
        _, stride, filt = self._attrs(node)
        g = self._geometry(node, graph)
        act_min, act_max = act_bounds(node, y)
        return dict(batches=x.shape[0], in_h=x.shape[1], in_w=x.shape[2], channels=x.shape[3],
                    out_h=y.shape[1], out_w=y.shape[2], filter_h=filt[0], filter_w=filt[1],
                    stride_h=stride[0], stride_w=stride[1],
                    pad_top=g["pad_top"], pad_left=g["pad_left"],
                    act_min=int(act_min), act_max=int(act_max))

    def _windows(self, node, graph, x):
        """Yield (oy, ox, window [N, h, w, C]) over the output grid, in-bounds part only."""
        p = self.prepare(node, graph)
        for oy in range(p["out_h"]):
            y0 = oy * p["stride_h"] - p["pad_top"]
            ys, ye = max(0, y0), min(p["in_h"], y0 + p["filter_h"])
            for ox in range(p["out_w"]):
                x0 = ox * p["stride_w"] - p["pad_left"]
                xs, xe = max(0, x0), min(p["in_w"], x0 + p["filter_w"])
                yield oy, ox, x[:, ys:ye, xs:xe, :]

    def _pool(self, win):
        """The int64 [N, C] result of one window [N, h, w, C], before the activation clamp."""
        raise NotImplementedError

    def reference(self, node, graph, inputs: list) -> list:
        y_t = graph.tensor(node.outputs[0])
        p = self.prepare(node, graph)
        y = np.zeros(y_t.shape, dtype=np.int64)
        for oy, ox, win in self._windows(node, graph, inputs[0]):
            y[:, oy, ox, :] = self._pool(win.astype(np.int64))
        return [np.clip(y, p["act_min"], p["act_max"]).astype(np.int8)]


@register
class AveragePool2D(_PoolBase):
    """Kernel: te_avg_pool_2d_s8 (firmware/kernels/te_avg_pool_2d_s8.h)."""

    name = "AVERAGE_POOL_2D"
    template = "ops/avg_pool_2d.c.j2"
    kernels = ("te_avg_pool_2d_s8.c",)

    def _pool(self, win):
        count = win.shape[1] * win.shape[2]
        acc = win.sum(axis=(1, 2))
        half = count // 2
        # C division truncates toward zero
        pos = (acc + half) // count
        neg = -((-(acc - half)) // count)
        return np.where(acc > 0, pos, neg)


@register
class MaxPool2D(_PoolBase):
    """Kernel: te_max_pool_2d_s8 (firmware/kernels/te_max_pool_2d_s8.h)."""

    name = "MAX_POOL_2D"
    template = "ops/max_pool_2d.c.j2"
    kernels = ("te_max_pool_2d_s8.c",)

    def _pool(self, win):
        return win.max(axis=(1, 2))
