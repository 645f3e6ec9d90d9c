"""Shape inference in ONNX's logical (NCHW) layout, and the attribute readers that shape inference
and lowering share (pooling / convolution windows, axes, pads)."""
from __future__ import annotations

import numpy as np

from .model import OnnxGraph, OnnxNode, node_error


def infer_shapes(g: OnnxGraph) -> None:
    """g.shape of every node output, nodes in topological order; ops without a rule (activations,
    edge nodes) keep their first input's shape."""
    for n in g.nodes:
        fn = SHAPE_RULES.get(n.op)
        if fn is None:
            x = g.shape[n.inputs[0]]
            for o in n.outputs:
                if o:
                    g.shape[o] = x
            continue
        shapes = fn(g, n)
        for o, s in zip(n.outputs, shapes):
            if o:
                if any(int(d) <= 0 for d in s):
                    raise node_error(n, f"output shape {tuple(s)} is empty")
                g.shape[o] = tuple(int(d) for d in s)


def window_attrs(n: OnnxNode, x, k=None):
    """(kernel, strides, dilations, pads, output H/W) of a Conv / pool over NCHW shape x."""
    k = list(k if k is not None else n.attrs.get("kernel_shape"))
    nd = len(k)
    strides = list(n.attrs.get("strides", [1] * nd))
    dil = list(n.attrs.get("dilations", [1] * nd))
    pads = list(n.attrs.get("pads", [0] * (2 * nd)))
    auto = n.attrs.get("auto_pad", "NOTSET")
    spatial = x[2:]
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * (2 * nd)
        for i in range(nd):
            out = -(-spatial[i] // strides[i])
            total = max((out - 1) * strides[i] + (k[i] - 1) * dil[i] + 1 - spatial[i], 0)
            small, big = total // 2, total - total // 2
            pads[i], pads[i + nd] = (small, big) if auto == "SAME_UPPER" else (big, small)
    elif auto == "VALID":
        pads = [0] * (2 * nd)
    ceil = int(n.attrs.get("ceil_mode", 0))
    outs = []
    for i in range(nd):
        eff = (k[i] - 1) * dil[i] + 1
        num = spatial[i] + pads[i] + pads[i + nd] - eff
        o = (-(-num // strides[i]) if ceil else num // strides[i]) + 1
        if ceil and (o - 1) * strides[i] >= spatial[i] + pads[i]:
            o -= 1
        outs.append(o)
    return k, strides, dil, pads, outs


def axes_of(g: OnnxGraph, n: OnnxNode, rank: int):
    """The axes (input 1 or attribute), made non-negative for a tensor of `rank` dims."""
    if len(n.inputs) > 1 and n.inputs[1]:
        ax = [int(v) for v in g.const_of(n, 1, "axes").reshape(-1)]
    else:
        ax = n.attrs.get("axes")
        if ax is None:
            return None
    return sorted(int(a) + rank if int(a) < 0 else int(a) for a in ax)


def pads_of(g: OnnxGraph, n: OnnxNode, rank: int) -> list:
    """A Pad node's pads (begin of every axis, then end of every axis)."""
    if g.opset >= 11:
        pads = [int(v) for v in g.const_of(n, 1, "pads").reshape(-1)]
        if len(n.inputs) > 3 and n.inputs[3]:
            raise node_error(n, "the axes input (supported: pads for every axis)")
    else:
        pads = list(n.attrs.get("pads"))
    if len(pads) != 2 * rank:
        raise node_error(n, f"{len(pads)} pads for a {rank}-D input")
    if any(p < 0 for p in pads):
        raise node_error(n, "negative pads (cropping) are not supported")
    return pads


# -- one rule per op: (graph, node) -> [output shape, ...] ---------------------------------------
def _conv(g, n):
    x, w = g.input_shape(n, 0), g.input_shape(n, 1)
    if len(x) != 4 or w is None or len(w) != 4:
        raise node_error(n, f"only 2-D convolution on NCHW inputs is supported (input {x})")
    _, _, _, _, outs = window_attrs(n, x, w[2:])
    return [(x[0], w[0], outs[0], outs[1])]


def _pool(g, n):
    x = g.input_shape(n, 0)
    if len(x) != 4:
        raise node_error(n, f"only 2-D pooling on NCHW inputs is supported (input {x})")
    _, _, _, _, outs = window_attrs(n, x)
    return [(x[0], x[1], outs[0], outs[1])]


def _global_average_pool(g, n):
    x = g.input_shape(n, 0)
    return [tuple(x[:2]) + (1,) * (len(x) - 2)]


def _gemm(g, n):
    a, b = g.input_shape(n, 0), g.input_shape(n, 1)
    if len(a) != 2 or b is None or len(b) != 2:
        raise node_error(n, f"Gemm needs 2-D operands (got {a} and {b})")
    if n.attrs.get("transA", 0):
        raise node_error(n, "transA=1 (supported: 0)")
    out = b[0] if n.attrs.get("transB", 0) else b[1]
    return [(a[0], out)]


def _matmul(g, n):
    a, b = g.input_shape(n, 0), g.input_shape(n, 1)
    if b is None or len(b) != 2 or n.inputs[1] in g.shape:
        raise node_error(n, "MatMul needs a constant 2-D second operand (weights)")
    if len(a) == 4 or len(a) < 1 or a[-1] != b[0]:
        raise node_error(n, f"MatMul of {a} by {b} (supported: [..., K] x [K, N], input rank up to 3)")
    return [tuple(a[:-1]) + (b[1],)]


def _binary(g, n):
    a, b = g.input_shape(n, 0), g.input_shape(n, 1)
    try:
        return [tuple(np.broadcast_shapes(tuple(a), tuple(b)))]
    except ValueError:
        raise node_error(n, f"shapes {a} and {b} do not broadcast") from None


def _flatten(g, n):
    x = g.input_shape(n, 0)
    axis = int(n.attrs.get("axis", 1))
    axis = axis + len(x) if axis < 0 else axis
    return [(int(np.prod(x[:axis], dtype=np.int64)), int(np.prod(x[axis:], dtype=np.int64)))]


def _reshape(g, n):
    x = g.input_shape(n, 0)
    s = [int(v) for v in g.const_of(n, 1, "the target shape").reshape(-1)]
    allow0 = int(n.attrs.get("allowzero", 0))
    s = [x[i] if v == 0 and not allow0 and i < len(x) else v for i, v in enumerate(s)]
    if s.count(-1) > 1:
        raise node_error(n, f"target shape {s} has more than one -1")
    if -1 in s:
        rest = int(np.prod([v for v in s if v != -1], dtype=np.int64))
        s[s.index(-1)] = int(np.prod(x, dtype=np.int64)) // max(rest, 1)
    if int(np.prod(s, dtype=np.int64)) != int(np.prod(x, dtype=np.int64)):
        raise node_error(n, f"cannot reshape {x} to {s}")
    return [tuple(s)]


def _squeeze(g, n):
    x = g.input_shape(n, 0)
    ax = axes_of(g, n, len(x))
    ax = [i for i, d in enumerate(x) if d == 1] if ax is None else ax
    return [tuple(d for i, d in enumerate(x) if i not in ax)]


def _unsqueeze(g, n):
    x = list(g.input_shape(n, 0))
    raw = axes_of(g, n, 0)
    if raw is None:
        raise node_error(n, "Unsqueeze without axes")
    rank = len(x) + len(raw)
    ax = axes_of(g, n, rank)
    for a in ax:
        x.insert(a, 1)
    return [tuple(x)]


def _transpose(g, n):
    x = g.input_shape(n, 0)
    perm = n.attrs.get("perm", list(range(len(x)))[::-1])
    return [tuple(x[p] for p in perm)]


def _concat(g, n):
    shapes = [g.input_shape(n, i) for i in range(len(n.inputs)) if n.inputs[i]]
    axis = int(n.attrs.get("axis"))
    axis = axis + len(shapes[0]) if axis < 0 else axis
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    return [tuple(out)]


def _reduce_mean(g, n):
    x = g.input_shape(n, 0)
    ax = axes_of(g, n, len(x))
    if ax is None:
        if n.attrs.get("noop_with_empty_axes", 0):
            raise node_error(n, "an empty axes list with noop_with_empty_axes=1")
        ax = list(range(len(x)))
    keep = int(n.attrs.get("keepdims", 1))
    return [tuple((1 if i in ax else d) for i, d in enumerate(x) if keep or i not in ax)]


def _pad(g, n):
    x = g.input_shape(n, 0)
    pads = pads_of(g, n, len(x))
    return [tuple(d + pads[i] + pads[i + len(x)] for i, d in enumerate(x))]


def _resize(g, n):
    x = g.input_shape(n, 0)
    if len(x) != 4:
        raise node_error(n, f"Resize of a {len(x)}-D tensor (supported: 4-D NCHW)")
    sizes = g.const_of(n, 3, "sizes") if len(n.inputs) > 3 and n.inputs[3] else None
    if sizes is not None and sizes.size:
        out = [int(v) for v in sizes.reshape(-1)]
    else:
        idx = 2 if g.opset >= 11 else 1
        scales = g.const_of(n, idx, "scales")
        if scales is None or scales.size != 4:
            raise node_error(n, "needs constant scales or sizes for all 4 dimensions")
        out = [int(np.floor(d * float(s))) for d, s in zip(x, scales.reshape(-1))]
    if out[0] != x[0] or out[1] != x[1]:
        raise node_error(n, "only the spatial (H, W) dimensions may be resized")
    return [tuple(out)]


SHAPE_RULES = {
    "Conv": _conv, "MaxPool": _pool, "AveragePool": _pool,
    "GlobalAveragePool": _global_average_pool, "Gemm": _gemm, "MatMul": _matmul,
    "Add": _binary, "Mul": _binary, "Flatten": _flatten, "Reshape": _reshape,
    "Squeeze": _squeeze, "Unsqueeze": _unsqueeze, "Transpose": _transpose, "Concat": _concat,
    "ReduceMean": _reduce_mean, "Pad": _pad, "Resize": _resize,
}
