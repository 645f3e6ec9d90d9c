"""Constant operands as the IR's kernels take them: int8 weights (symmetric, per channel along the
output axis), int32 biases in input scale x weight scale, per-tensor int8 Add / Mul constants.
A QDQ file's quantized constants are checked and reused; a float file's are quantized here."""
from __future__ import annotations

import numpy as np

from ... import quantizer
from ...ir import QuantParams
from .builder import NHWC, IRBuilder
from .model import OnnxNode, node_error


def weights(b: IRBuilder, n: OnnxNode, idx: int, axis: int):
    """(int8 weights in ONNX layout, QuantParams) of input idx, output channels along `axis`."""
    t = n.inputs[idx]
    if t in b.g.qconst:
        data, qp = b.g.qconst[t]
        if data.dtype != np.int8:
            raise node_error(n, f"weights '{t}' are {data.dtype} (supported: int8)")
        if np.any(qp.zero_point != 0):
            raise node_error(n, f"weights '{t}' are asymmetric (zero point != 0); TFLite int8 needs "
                                "symmetric weights (quantize_static with WeightSymmetric=True)")
        if qp.per_channel and qp.axis != axis:
            raise node_error(n, f"weights '{t}' are quantized per channel along axis {qp.axis} "
                                f"(supported: the output-channel axis {axis})")
        return data, qp
    if t in b.g.consts:
        w = np.asarray(b.g.consts[t])
        if w.dtype.kind != "f":
            raise node_error(n, f"weights '{t}' are {w.dtype} without DequantizeLinear")
        return quantizer.quantize_weights(w, axis)
    raise node_error(n, f"weights '{t}' must be a constant")


def bias(b: IRBuilder, n: OnnxNode, idx: int, in_q: QuantParams, w_q: QuantParams, count: int):
    """The int32 bias of input idx (None if absent) in scale in_q x w_q, `count` values."""
    t = n.inputs[idx] if idx < len(n.inputs) else None
    if not t:
        return None
    ws = w_q.scale if w_q.per_channel else np.full(count, w_q.scale[0])
    want = (np.float32(in_q.s) * ws.astype(np.float32)).astype(np.float64)
    if t in b.g.qconst:
        data, qp = b.g.qconst[t]
        data = np.asarray(data).reshape(-1)
        if data.size != count:
            raise node_error(n, f"bias '{t}' has {data.size} values for {count} outputs")
        scale = qp.scale if qp.per_channel else np.full(count, qp.scale[0])
        if data.dtype == np.int32 and np.all(qp.zero_point == 0) and \
                np.allclose(scale, want, rtol=1e-5, atol=0):
            return data.astype(np.int32)
        real = (data.astype(np.float64) - qp.zero_point.astype(np.float64)) * scale
        return np.clip(np.round(real / want), -(2 ** 31), 2 ** 31 - 1).astype(np.int32)
    if t in b.g.consts:
        v = np.asarray(b.g.consts[t], np.float64).reshape(-1)
        if v.size == 1 and count > 1:
            v = np.full(count, v[0])
        if v.size != count:
            raise node_error(n, f"bias '{t}' has {v.size} values for {count} outputs")
        return np.clip(np.round(v / want), -(2 ** 31), 2 ** 31 - 1).astype(np.int32)
    raise node_error(n, f"bias '{t}' must be a constant")


def operand(b: IRBuilder, n: OnnxNode, idx: int, out_rank: int) -> str:
    """An activation's IR tensor, or an Add / Mul constant quantized per tensor."""
    t = n.inputs[idx]
    if t in b.map:
        return b.map[t]
    if t in b.g.qconst:
        data, qp = b.g.qconst[t]
        if qp.per_channel:
            raise node_error(n, f"constant '{t}' is quantized per channel (supported: per-tensor)")
        if data.dtype != np.int8:
            raise node_error(n, f"constant '{t}' is {data.dtype} (supported: int8)")
    elif t in b.g.consts:
        data, qp = quantizer.quantize_const(b.g.consts[t])
    else:
        raise node_error(n, f"input '{t}' is not available")
    data = np.asarray(data)
    if out_rank == 4:
        data = data.reshape((1,) * (4 - data.ndim) + data.shape).transpose(NHWC)
    return b.const(t, data, "int8", qp)
