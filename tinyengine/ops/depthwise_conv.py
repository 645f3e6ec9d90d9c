"""DEPTHWISE_CONV_2D (int8, depth multiplier), TFLite Micro's ``DepthwiseConvPerChannel``.

Same arithmetic as CONV_2D (see conv.py): per output channel ``c*M+m`` the taps of input
channel ``c``; ``acc_init`` folds bias and input offset at compile time.
"""
from __future__ import annotations

import numpy as np

from tinyengine.ops import register, unsupported
from tinyengine.ops._common import c_i32
from tinyengine.ops.conv import _ConvBase, _pad_for_windows, _requantize, _tap
from tinyengine.quant import wrap_int32


@register
class DepthwiseConv2D(_ConvBase):
    """DEPTHWISE_CONV_2D, weights [1, KH, KW, C*M].  Kernel: te_depthwise_conv_2d_s8."""

    name = "DEPTHWISE_CONV_2D"
    template = "ops/depthwise_conv_2d.c.j2"
    kernels = ("te_depthwise_conv_2d_s8.c",)
    weight_qdim = 3

    def _mult(self, node, graph) -> int:
        x = graph.tensor(node.inputs[0])
        w = graph.tensor(node.inputs[1])
        return w.shape[3] // x.shape[3]

    def check(self, node, graph) -> None:
        if len(node.inputs) < 2 or node.inputs[1] is None:
            raise unsupported(node, "needs a weight tensor")
        x = graph.tensor(node.inputs[0])
        w = graph.tensor(node.inputs[1])
        if len(w.shape) != 4 or w.shape[0] != 1 or len(x.shape) != 4:
            raise unsupported(node, f"weights must be [1, KH, KW, C*M] (got {w.shape}) and "
                                    f"the input 4-D (got {x.shape})")
        if w.shape[3] % x.shape[3] != 0:
            raise unsupported(node, f"{w.shape[3]} output channels is not a multiple of "
                                    f"{x.shape[3]} input channels")
        m_attr = node.attrs.get("depth_multiplier")
        m = w.shape[3] // x.shape[3]
        if m_attr not in (None, 0) and int(m_attr) != m:
            raise unsupported(node, f"depth_multiplier {m_attr} disagrees with the shapes "
                                    f"({x.shape[3]} -> {w.shape[3]} channels)")
        self._check_common(node, graph, w.shape[3])

    def prepare(self, node, graph) -> dict:
        x = graph.tensor(node.inputs[0])
        w = graph.tensor(node.inputs[1])
        y = graph.tensor(node.outputs[0])
        _, k_h, k_w, out_c = w.shape
        q = self._quant(node, graph, out_c)
        g = self._geometry(node, graph)
        _, stride, dil = self._attrs(node)
        wsum = np.asarray(w.data, dtype=np.int64).reshape(-1, out_c).sum(axis=0)
        bias = self._bias(node, graph)
        acc_init = wrap_int32((bias if bias is not None else 0) + q["input_offset"] * wsum)
        return dict(
            batches=x.shape[0], in_h=x.shape[1], in_w=x.shape[2], in_c=x.shape[3],
            depth_multiplier=self._mult(node, graph), k_h=k_h, k_w=k_w,
            out_h=y.shape[1], out_w=y.shape[2],
            stride_h=stride[0], stride_w=stride[1], dil_h=dil[0], dil_w=dil[1],
            pad_top=g["pad_top"], pad_left=g["pad_left"],
            pad_value=int(x.quant.zero_point[0]),
            acc_init=c_i32(acc_init), out_mult=c_i32(q["out_mult"]),
            out_shift=c_i32(q["out_shift"]), output_offset=q["output_offset"],
            act_min=q["act_min"], act_max=q["act_max"],
        )

    def reference(self, node, graph, inputs: list) -> list:
        x, w = inputs[0], inputs[1]
        bias = inputs[2] if len(inputs) > 2 else None
        _, k_h, k_w, out_c = w.shape
        m = out_c // x.shape[3]
        q = self._quant(node, graph, out_c)
        g = self._geometry(node, graph)
        _, stride, dil = self._attrs(node)
        xs = x.astype(np.int64) + q["input_offset"]
        xp = _pad_for_windows(xs, g, (k_h, k_w), stride, dil, 0)
        xp = xp[..., np.arange(out_c) // m]          # output channel c*M+m reads input c
        wt = w.astype(np.int64)
        acc = np.zeros((x.shape[0], g["out_h"], g["out_w"], out_c), dtype=np.int64)
        for ky in range(k_h):
            for kx in range(k_w):
                acc += _tap(xp, ky, kx, g, stride, dil) * wt[0, ky, kx, :]
        y = _requantize(acc, bias, q["out_mult"], q["out_shift"], q["output_offset"],
                        q["act_min"], q["act_max"])
        return [y]

    def macs(self, node, graph) -> int:
        w = graph.tensor(node.inputs[1])
        y = graph.tensor(node.outputs[0])
        return int(np.prod(y.shape)) * int(w.shape[1] * w.shape[2])
