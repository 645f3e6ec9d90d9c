"""Lowering of the model's edges and of the ONNX ops that move data: the float input enters
through QUANTIZE and leaves through DEQUANTIZE (NCHW <-> NHWC recorded for the host); Flatten /
Reshape / Squeeze / Unsqueeze of a tensor whose NCHW and NHWC orders differ get a TRANSPOSE so
the element order stays ONNX's; Transpose, Concat, Pad, Resize (nearest).  One function per op
family, (builder, node) -> None, collected in LAYOUT_LOWERINGS."""
from __future__ import annotations

import numpy as np

from ... import quantizer
from ...ir import Tensor
from ...ops.shape_ops import nearest_indices
from .builder import AXIS_TO_NHWC, NCHW, NHWC, IRBuilder, nhwc
from .model import OnnxNode, node_error
from .shapes import pads_of


# -- edges ------------------------------------------------------------------------------------
def quantize_in(b: IRBuilder, n: OnnxNode) -> None:
    x = n.inputs[0]
    shape = b.g.shape[x]
    if x not in b.map:
        name = b.new(x, nhwc(shape), "float32")
        b.map[x] = name
        if len(shape) == 4:
            b.meta_layout["inputs"][name] = (Tensor(x, shape, "float32"), NHWC)
    b.emit("QUANTIZE", n.name, [b.map[x]], [b.out(n)])


def dequantize_out(b: IRBuilder, n: OnnxNode) -> None:
    y = n.outputs[0]
    shape = b.g.shape[n.inputs[0]]
    b.g.shape[y] = shape
    name = b.new(y, nhwc(shape), "float32")
    b.map[y] = name
    if len(shape) == 4:
        b.meta_layout["outputs"][name] = (Tensor(y, shape, "float32"), NCHW)
    b.emit("DEQUANTIZE", n.name, [b.act(n.inputs[0])], [name])


def requant(b: IRBuilder, n: OnnxNode) -> None:
    b.emit("QUANTIZE", n.name, [b.act(n.inputs[0])], [b.out(n)])


# -- data movement ----------------------------------------------------------------------------
def reshape_to(b: IRBuilder, n: OnnxNode, src: str, onnx_in: tuple, onnx_out: tuple) -> str:
    """IR tensors reshaped as ONNX reshapes NCHW data (TRANSPOSE where orders differ)."""
    t = b.tensors[src]

    def trivial(s):
        return len(s) == 4 and (s[1] == 1 or s[2] * s[3] == 1)

    cur = src
    if len(onnx_in) == 4 and not trivial(onnx_in):
        dst = b.new(f"{src}:nchw", onnx_in, "int8", t.quant)
        perm = b.const(f"{n.name}:perm_nchw", np.array(NCHW, np.int32), "int32")
        b.emit("TRANSPOSE", f"{n.name}:to_nchw", [cur, perm], [dst])
        cur = dst
    if len(onnx_out) == 4 and not trivial(onnx_out):
        mid = b.new(f"{n.outputs[0]}:nchw", onnx_out, "int8", t.quant)
        b.emit("RESHAPE", n.name, [cur], [mid])
        dst = b.tmp(n, nhwc(onnx_out), t.quant, "nhwc")
        perm = b.const(f"{n.name}:perm_nhwc", np.array(NHWC, np.int32), "int32")
        b.emit("TRANSPOSE", f"{n.name}:to_nhwc", [mid, perm], [dst])
        return dst
    target = nhwc(onnx_out)
    if tuple(b.tensors[cur].shape) == tuple(target):
        return cur
    dst = b.tmp(n, target, t.quant, "reshaped")
    b.emit("RESHAPE", n.name, [cur], [dst])
    return dst


def reshape(b: IRBuilder, n: OnnxNode) -> None:
    """Flatten, Reshape, Squeeze, Unsqueeze."""
    src = b.act(n.inputs[0])
    out = reshape_to(b, n, src, b.g.shape[n.inputs[0]], b.g.shape[n.outputs[0]])
    b.finish(n, out)


def transpose(b: IRBuilder, n: OnnxNode) -> None:
    x = b.g.shape[n.inputs[0]]
    perm = list(n.attrs.get("perm", list(range(len(x)))[::-1]))
    y = b.g.shape[n.outputs[0]]
    # IR x_ir = x.transpose(pin); y = x.transpose(perm); y_ir = y.transpose(pout)
    pin = list(NHWC) if len(x) == 4 else list(range(len(x)))
    pout = list(NHWC) if len(y) == 4 else list(range(len(y)))
    inv_in = [pin.index(i) for i in range(len(x))]
    comp = [inv_in[perm[p]] for p in pout]
    src = b.act(n.inputs[0])
    t = b.tensors[src]
    if comp == list(range(len(x))):
        b.finish(n, src)
        return
    dst = b.tmp(n, nhwc(y), t.quant, "transposed")
    pc = b.const(f"{n.name}:perm", np.array(comp, np.int32), "int32")
    b.emit("TRANSPOSE", n.name, [src, pc], [dst])
    b.finish(n, dst)


def concat(b: IRBuilder, n: OnnxNode) -> None:
    y = b.g.shape[n.outputs[0]]
    axis = int(n.attrs["axis"])
    axis = axis + len(y) if axis < 0 else axis
    ir_axis = AXIS_TO_NHWC[axis] if len(y) == 4 else axis
    want = b.q(n.outputs[0])
    ins = []
    for i, t in enumerate(n.inputs):
        if not t:
            continue
        if t not in b.map:
            raise node_error(n, f"constant input '{t}' (supported: activations)")
        ins.append(b.requant_to(n, b.act(t), want, f"requant{i}"))
    b.emit("CONCATENATION", n.name, ins, [b.out(n)], {"axis": ir_axis, "activation": "NONE"})


def pad(b: IRBuilder, n: OnnxNode) -> None:
    mode = n.attrs.get("mode", "constant")
    if mode != "constant":
        raise node_error(n, f"mode {mode!r} (supported: constant)")
    x = b.g.shape[n.inputs[0]]
    pads = pads_of(b.g, n, len(x))
    r = len(x)
    pairs = [[pads[i], pads[i + r]] for i in range(r)]
    if r == 4:
        pairs = [pairs[i] for i in NHWC]
    if b.g.opset >= 11:
        v = b.g.const_of(n, 2, "constant_value") if len(n.inputs) > 2 and n.inputs[2] else None
        value = 0.0 if v is None or v.size == 0 else float(v.reshape(-1)[0])
    else:
        value = float(n.attrs.get("value", 0.0))
    src = b.act(n.inputs[0])
    t = b.tensors[src]
    dst = b.tmp(n, nhwc(b.g.shape[n.outputs[0]]), t.quant, "padded")
    pname = b.const(f"{n.name}:paddings", np.array(pairs, np.int32), "int32")
    if value == 0.0:
        b.emit("PAD", n.name, [src, pname], [dst])
    else:
        code = quantizer.quantize_values(np.array([value]), t.quant)
        vname = b.const(f"{n.name}:value", code, "int8", t.quant)
        b.emit("PADV2", n.name, [src, pname, vname], [dst])
    b.finish(n, dst)


def resize(b: IRBuilder, n: OnnxNode) -> None:
    mode = n.attrs.get("mode", "nearest")
    if mode != "nearest":
        raise node_error(n, f"mode {mode!r} (supported: nearest)")
    x, y = b.g.shape[n.inputs[0]], b.g.shape[n.outputs[0]]
    ctm = n.attrs.get("coordinate_transformation_mode", "half_pixel")
    nm = n.attrs.get("nearest_mode", "round_prefer_floor")
    maps = [onnx_nearest(x[d], y[d], ctm, nm, n) for d in (2, 3)]
    choice = None
    for ac, hp in ((False, False), (False, True), (True, False)):
        if all(np.array_equal(nearest_indices(x[d], y[d], ac, hp), maps[i])
               for i, d in enumerate((2, 3))):
            choice = (ac, hp)
            break
    if choice is None:
        raise node_error(n, f"coordinate_transformation_mode={ctm}, nearest_mode={nm} picks pixels "
                            "TFLite's RESIZE_NEAREST_NEIGHBOR cannot (supported: asymmetric/floor and "
                            "equivalents)")
    src = b.act(n.inputs[0])
    t = b.tensors[src]
    dst = b.tmp(n, nhwc(y), t.quant, "resized")
    size = b.const(f"{n.name}:size", np.array(y[2:], np.int32), "int32")
    b.emit("RESIZE_NEAREST_NEIGHBOR", n.name, [src, size], [dst],
           {"align_corners": choice[0], "half_pixel_centers": choice[1]})
    b.finish(n, dst)


def onnx_nearest(in_size: int, out_size: int, ctm: str, mode: str, n: OnnxNode) -> np.ndarray:
    """ONNX Resize (nearest) source index of every output coordinate of one axis."""
    scale = out_size / in_size
    i = np.arange(out_size, dtype=np.float64)
    if ctm == "asymmetric":
        x = i / scale
    elif ctm == "half_pixel":
        x = (i + 0.5) / scale - 0.5
    elif ctm == "pytorch_half_pixel":
        x = (i + 0.5) / scale - 0.5 if out_size > 1 else np.zeros_like(i)
    elif ctm == "align_corners":
        x = i * (in_size - 1) / (out_size - 1) if out_size > 1 else np.zeros_like(i)
    elif ctm == "tf_half_pixel_for_nn":
        x = (i + 0.5) / scale
    else:
        raise node_error(n, f"coordinate_transformation_mode {ctm!r}")
    if mode == "floor":
        r = np.floor(x)
    elif mode == "ceil":
        r = np.ceil(x)
    elif mode == "round_prefer_floor":
        r = np.where(x - np.floor(x) == 0.5, np.floor(x), np.round(x))
    elif mode == "round_prefer_ceil":
        r = np.where(x - np.floor(x) == 0.5, np.ceil(x), np.round(x))
    else:
        raise node_error(n, f"nearest_mode {mode!r}")
    return np.clip(r, 0, in_size - 1).astype(np.int64)


LAYOUT_LOWERINGS = {
    "__QUANTIZE_IN": quantize_in, "__DEQUANTIZE_OUT": dequantize_out, "__REQUANT": requant,
    "Flatten": reshape, "Reshape": reshape, "Squeeze": reshape, "Unsqueeze": reshape,
    "Transpose": transpose, "Concat": concat, "Pad": pad, "Resize": resize,
}
