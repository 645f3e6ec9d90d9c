"""Lowering of the ONNX ops that compute: Conv -> CONV_2D (OHWI weights) or DEPTHWISE_CONV_2D
(1HW(C*M)), Gemm / MatMul -> FULLY_CONNECTED, Add / Mul, activations, Sigmoid / Softmax,
GlobalAveragePool / ReduceMean -> MEAN, MaxPool / AveragePool.  One function per op family,
(builder, node) -> None, collected in COMPUTE_LOWERINGS."""
from __future__ import annotations

import numpy as np

from ... import quantizer
from ...ir import QuantParams
from ...ops.common import window_geometry
from .builder import AXIS_TO_NHWC, IRBuilder, nhwc
from .model import OnnxNode, node_error
from .operands import bias, operand, weights
from .shapes import axes_of, window_attrs
from .simplify import activation_of


def padding_for(b: IRBuilder, n: OnnxNode, xin, x, k, strides, dil, pads, outs, pad_value):
    """SAME / VALID when TFLite's rule gives the ONNX windows, else an explicit PAD."""
    if not any(pads):
        return "VALID", xin
    g = window_geometry("SAME", x[2:], k, strides, dil)
    if (g["out_h"], g["out_w"]) == tuple(outs) and (g["pad_top"], g["pad_left"]) == (pads[0], pads[1]):
        return "SAME", xin
    t = b.tensors[xin]
    paddings = np.array([[0, 0], [pads[0], pads[2]], [pads[1], pads[3]], [0, 0]], np.int32)
    shape = (t.shape[0], t.shape[1] + pads[0] + pads[2], t.shape[2] + pads[1] + pads[3], t.shape[3])
    dst = b.new(f"{xin}:padded", shape, "int8", t.quant)
    pname = b.const(f"{n.name}:paddings", paddings, "int32")
    if pad_value is None:
        b.emit("PAD", f"{n.name}:pad", [xin, pname], [dst])
    else:
        v = b.const(f"{n.name}:pad_value", np.array([pad_value]), "int8", t.quant)
        b.emit("PADV2", f"{n.name}:pad", [xin, pname, v], [dst])
    return "VALID", dst


def conv(b: IRBuilder, n: OnnxNode) -> None:
    x = b.g.shape[n.inputs[0]]
    wshape = b.g.input_shape(n, 1)
    k, strides, dil, pads, outs = window_attrs(n, x, wshape[2:])
    group = int(n.attrs.get("group", 1))
    cin = x[1]
    xin = b.act(n.inputs[0])
    in_q = b.q(n.inputs[0])
    w, wq = weights(b, n, 1, 0)
    o_ch = w.shape[0]
    if group == 1:
        op, w_ir, w_axis = "CONV_2D", w.transpose(0, 2, 3, 1), 0
    elif group == cin and w.shape[1] == 1:
        op, w_ir, w_axis = "DEPTHWISE_CONV_2D", w.transpose(1, 2, 3, 0), 3
    else:
        raise node_error(n, f"grouped convolution with group={group} (supported: 1, or the number of "
                            f"input channels {cin} for depthwise)")
    padding, xin = padding_for(b, n, xin, x, k, strides, dil, pads, outs, pad_value=None)
    qp = QuantParams(wq.scale, wq.zero_point, w_axis if wq.per_channel else None)
    wt = b.const(n.inputs[1], w_ir, "int8", qp)
    bv = bias(b, n, 2, in_q, wq, o_ch)
    ins = [xin, wt] + ([b.const(n.inputs[2], bv, "int32")] if bv is not None else [])
    attrs = {"padding": padding, "stride": tuple(strides), "dilation": tuple(dil),
             "activation": n.attrs.get("_activation", "NONE")}
    if op == "DEPTHWISE_CONV_2D":
        attrs["depth_multiplier"] = o_ch // cin
    b.emit(op, n.name, ins, [b.out(n)], attrs)


def _fully_connected(b: IRBuilder, n: OnnxNode, w_onnx_axis_out: int, w_is_out_in: bool) -> None:
    in_q = b.q(n.inputs[0])
    w, wq = weights(b, n, 1, w_onnx_axis_out)
    if not w_is_out_in:
        w = w.T
    qp = QuantParams(wq.scale, wq.zero_point, 0 if wq.per_channel else None)
    wt = b.const(n.inputs[1], w, "int8", qp)
    bv = bias(b, n, 2, in_q, wq, w.shape[0]) if n.op == "Gemm" else None
    ins = [b.act(n.inputs[0]), wt] + ([b.const(n.inputs[2], bv, "int32")] if bv is not None else [])
    b.emit("FULLY_CONNECTED", n.name, ins, [b.out(n)],
           {"activation": n.attrs.get("_activation", "NONE"),
            "keep_num_dims": len(b.g.shape[n.outputs[0]]) > 2})


def gemm(b: IRBuilder, n: OnnxNode) -> None:
    consts = b.g.consts
    trans_b = int(n.attrs.get("transB", 0))
    alpha, beta = float(n.attrs.get("alpha", 1.0)), float(n.attrs.get("beta", 1.0))
    if alpha != 1.0 or (beta != 1.0 and len(n.inputs) > 2 and n.inputs[2]):
        if n.inputs[1] in b.g.qconst:
            raise node_error(n, f"alpha={alpha}, beta={beta} (supported: 1 for quantized Gemm)")
        consts[n.inputs[1]] = np.asarray(consts[n.inputs[1]]) * alpha
        if len(n.inputs) > 2 and n.inputs[2]:
            consts[n.inputs[2]] = np.asarray(consts[n.inputs[2]]) * beta
    _fully_connected(b, n, 0 if trans_b else 1, bool(trans_b))


def matmul(b: IRBuilder, n: OnnxNode) -> None:
    _fully_connected(b, n, 1, False)


def _binary(b: IRBuilder, n: OnnxNode, op: str) -> None:
    rank = len(b.g.shape[n.outputs[0]])
    for i in (0, 1):
        t = n.inputs[i]
        if t in b.map and len(b.g.shape[t]) != rank and rank == 4:
            raise node_error(n, f"broadcasting the {len(b.g.shape[t])}-D activation '{t}' against a "
                                "4-D one (supported: same rank, or a constant operand)")
    x, y = operand(b, n, 0, rank), operand(b, n, 1, rank)
    b.emit(op, n.name, [x, y], [b.out(n)], {"activation": n.attrs.get("_activation", "NONE")})


def add(b: IRBuilder, n: OnnxNode) -> None:
    _binary(b, n, "ADD")


def mul(b: IRBuilder, n: OnnxNode) -> None:
    _binary(b, n, "MUL")


def activation(b: IRBuilder, n: OnnxNode) -> None:
    """A Relu / Clip that could not be fused (a QDQ pair sits between it and its producer)."""
    act = n.attrs.get("_activation") or activation_of(b.g, n)
    src = b.act(n.inputs[0])
    prod = next((p for p in reversed(b.nodes) if src in p.outputs), None)
    users = b.consumers.get(n.inputs[0], [])
    if (prod is not None and prod.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL")
            and prod.attrs.get("activation", "NONE") == "NONE" and len(users) == 1
            and n.inputs[0] not in b.g.outputs):
        prod.attrs["activation"] = act
        b.finish(n, src)
        return
    t = b.tensors[src]
    if len(t.shape) != 4:
        raise node_error(n, "a standalone activation on a non-4-D tensor (supported: fused into the "
                            "preceding Conv, Gemm, MatMul, Add or Mul)")
    dst = b.tmp(n, t.shape, t.quant, "act")       # 1x1 max pool = clamp only
    b.emit("MAX_POOL_2D", n.name, [src], [dst],
           {"padding": "VALID", "stride": (1, 1), "filter": (1, 1), "activation": act})
    b.finish(n, dst)


def sigmoid(b: IRBuilder, n: OnnxNode) -> None:
    src = b.act(n.inputs[0])
    t = b.tensors[src]
    dst = b.tmp(n, t.shape, QuantParams(*quantizer.FIXED_SIGMOID_SOFTMAX), "logistic")
    b.emit("LOGISTIC", n.name, [src], [dst])
    b.finish(n, dst)


def softmax(b: IRBuilder, n: OnnxNode) -> None:
    x = b.g.shape[n.inputs[0]]
    axis = int(n.attrs.get("axis", -1 if b.g.opset >= 13 else 1))
    axis = axis + len(x) if axis < 0 else axis
    last = (len(x) == 4 and axis == 1) or (len(x) != 4 and axis == len(x) - 1)
    if not last and not (b.g.opset < 13 and axis == len(x) - 1):
        raise node_error(n, f"softmax over axis {axis} of a {len(x)}-D tensor (supported: the last "
                            "axis, or the channels of an NCHW tensor)")
    if len(x) == 4 and axis == 3 and x[1] != 1:
        raise node_error(n, "softmax over the W axis of an NCHW tensor")
    src = b.act(n.inputs[0])
    t = b.tensors[src]
    dst = b.tmp(n, t.shape, QuantParams(*quantizer.FIXED_SIGMOID_SOFTMAX), "softmax")
    b.emit("SOFTMAX", n.name, [src], [dst], {"beta": 1.0})
    b.finish(n, dst)


def _mean(b: IRBuilder, n: OnnxNode, axes_onnx, keep) -> None:
    x = b.g.shape[n.inputs[0]]
    src = b.act(n.inputs[0])
    if len(x) == 4:
        axes = sorted(AXIS_TO_NHWC[a] for a in axes_onnx)
        if not keep:
            kept_ir = [d for d in range(4) if d not in axes]
            kept_onnx = [AXIS_TO_NHWC[d] for d in range(4) if d not in axes_onnx]
            if kept_ir != kept_onnx:
                raise node_error(n, f"reducing NCHW axes {axes_onnx} without keepdims changes the "
                                    "order of the remaining axes (supported: keepdims=1, or H and W)")
    else:
        axes = list(axes_onnx)
    ax = b.const(f"{n.name}:axes", np.array(axes, np.int32), "int32")
    b.emit("MEAN", n.name, [src, ax], [b.out(n)], {"keep_dims": bool(keep)})


def global_average_pool(b: IRBuilder, n: OnnxNode) -> None:
    x = b.g.shape[n.inputs[0]]
    _mean(b, n, list(range(2, len(x))), True)


def reduce_mean(b: IRBuilder, n: OnnxNode) -> None:
    x = b.g.shape[n.inputs[0]]
    ax = axes_of(b.g, n, len(x))
    _mean(b, n, ax if ax is not None else list(range(len(x))), int(n.attrs.get("keepdims", 1)))


def _pool(b: IRBuilder, n: OnnxNode, op: str) -> None:
    x = b.g.shape[n.inputs[0]]
    k, strides, dil, pads, outs = window_attrs(n, x)
    if any(d != 1 for d in dil):
        raise node_error(n, f"dilations {dil} (supported: 1)")
    src = b.act(n.inputs[0])
    t = b.tensors[src]
    g = window_geometry("SAME", x[2:], k, strides)
    if not any(pads) and not int(n.attrs.get("ceil_mode", 0)):
        padding = "VALID"
    elif (g["out_h"], g["out_w"]) == tuple(outs) and (g["pad_top"], g["pad_left"]) == (pads[0], pads[1]) \
            and (op == "MAX_POOL_2D" or not int(n.attrs.get("count_include_pad", 0))):
        padding = "SAME"
    elif op == "MAX_POOL_2D":       # -128 padding never wins a max: same as ignoring it
        padding, src = padding_for(b, n, src, x, k, strides, dil, pads + [], [-1, -1], pad_value=-128)
    elif int(n.attrs.get("count_include_pad", 0)):   # zeros padded are averaged in
        padding, src = padding_for(b, n, src, x, k, strides, dil, pads, [-1, -1], pad_value=None)
    else:
        raise node_error(n, f"pads {pads} that are not TFLite's SAME padding with count_include_pad=0")
    if padding == "VALID" and int(n.attrs.get("ceil_mode", 0)):
        _, _, _, _, floor_outs = window_attrs(OnnxNode(n.op, n.name, n.inputs, n.outputs,
                                                       {**n.attrs, "ceil_mode": 0}), x)
        if floor_outs != outs:
            raise node_error(n, "ceil_mode=1 adds a partial window (supported: ceil_mode=0)")
    dst = b.tmp(n, nhwc(b.g.shape[n.outputs[0]]), t.quant, "pool")
    b.emit(op, n.name, [src], [dst], {"padding": padding, "stride": tuple(strides),
                                      "filter": tuple(k), "activation": "NONE"})
    b.finish(n, dst)


def max_pool(b: IRBuilder, n: OnnxNode) -> None:
    if len(n.outputs) > 1 and n.outputs[1]:
        raise node_error(n, "the Indices output (supported: values only)")
    _pool(b, n, "MAX_POOL_2D")


def average_pool(b: IRBuilder, n: OnnxNode) -> None:
    _pool(b, n, "AVERAGE_POOL_2D")


COMPUTE_LOWERINGS = {
    "Conv": conv, "Gemm": gemm, "MatMul": matmul, "Add": add, "Mul": mul,
    "Relu": activation, "Clip": activation, "Sigmoid": sigmoid, "Softmax": softmax,
    "GlobalAveragePool": global_average_pool, "ReduceMean": reduce_mean,
    "MaxPool": max_pool, "AveragePool": average_pool,
}
