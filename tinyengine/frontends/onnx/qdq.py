"""Stage 3 for QDQ files: QuantizeLinear / DequantizeLinear folded into tensor quantization.

Every Q/DQ pair becomes the int8 parameters of the tensor between them (uint8 codes shift to
int8 by -128); constant weights and int32 biases behind a DequantizeLinear become quantized
constants (``g.qconst``).  The model's float inputs enter through synthetic ``__QUANTIZE_IN``
nodes, its outputs leave through ``__DEQUANTIZE_OUT``; a tensor quantized twice is requantized
(``__REQUANT``).  ``propagate_quant`` then gives the remaining tensors theirs: ops that only move
data keep their input's, Sigmoid / Softmax outputs take TFLite's fixed 1/256, -128, and a float
op that quantize_static left between a DQ and the next Q takes the quantization of that Q.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from ... import quantizer
from ...ir import QuantParams
from ...ops import UnsupportedError
from .model import OnnxGraph, OnnxNode, node_error

# ops whose output keeps the input's quantization (TFLite copies bytes / ignores requantization)
INHERIT = {"Flatten", "Reshape", "Squeeze", "Unsqueeze", "MaxPool", "AveragePool", "Pad",
           "Resize", "Transpose"}
KEEP = INHERIT | {"Relu", "Clip"}     # quantization passed on by propagate_quant
FIXED = {"Sigmoid", "Softmax"}
AVERAGE = {"ReduceMean", "GlobalAveragePool"}   # lowered to MEAN: the output lies within the input's range


def qparams_of(g: OnnxGraph, n: OnnxNode) -> tuple:
    """(QuantParams for int8 codes, onnx dtype of the codes) of a Q / DQ node."""
    scale = np.asarray(g.consts.get(n.inputs[1]), dtype=np.float64) if n.inputs[1] in g.consts else None
    if scale is None:
        raise node_error(n, "the scale must be a constant")
    if len(n.inputs) > 2 and n.inputs[2]:
        if n.inputs[2] not in g.consts:
            raise node_error(n, "the zero point must be a constant")
        zp_arr = np.asarray(g.consts[n.inputs[2]])
    else:
        zp_arr = np.zeros(scale.shape, np.uint8 if n.op == "QuantizeLinear" else np.int8)
    dtype = zp_arr.dtype
    if dtype not in (np.int8, np.uint8, np.int32):
        raise node_error(n, f"{dtype} quantization (supported: int8, uint8 activations; int8 weights; "
                            "int32 biases)")
    if "block_size" in n.attrs and n.attrs["block_size"]:
        raise node_error(n, "blocked quantization (supported: per-tensor and per-channel)")
    zp = zp_arr.astype(np.int64).reshape(-1)
    if dtype == np.uint8:
        zp = zp - 128                       # the same reals as int8 codes q - 128
    axis = n.attrs.get("axis", 1) if scale.size > 1 else None
    return QuantParams(scale.reshape(-1), zp, axis), dtype


def fold_qdq(g: OnnxGraph) -> None:
    prod = g.producers()
    alias: dict = {}          # DQ output -> int8 tensor
    q_of: dict = {}           # float tensor -> [Q output names]
    synth: list = []
    drop = set()
    for n in g.nodes:
        if n.op == "DequantizeLinear":
            qp, dt = qparams_of(g, n)
            x = n.inputs[0]
            drop.add(id(n))
            if x in g.consts:
                data = np.asarray(g.consts[x])
                if data.dtype == np.uint8:
                    data = (data.astype(np.int16) - 128).astype(np.int8)
                if qp.axis is not None and qp.axis < 0:
                    qp.axis += data.ndim
                g.qconst[n.outputs[0]] = (data, qp)
            else:
                alias[n.outputs[0]] = x
                g.quant.setdefault(x, qp)
    for n in g.nodes:
        if n.op == "QuantizeLinear":
            qp, dt = qparams_of(g, n)
            if dt == np.int32:
                raise node_error(n, "int32 activations (supported: int8, uint8)")
            drop.add(id(n))
            x, q = n.inputs[0], n.outputs[0]
            if x in g.consts:             # a float constant quantized in the file
                c = np.asarray(g.consts[x], np.float64)
                shape = [1] * c.ndim
                if qp.axis is not None:
                    shape[qp.axis] = -1
                s_, z_ = (qp.scale.reshape(shape), qp.zero_point.reshape(shape)) if c.ndim else \
                    (qp.scale[0], qp.zero_point[0])
                g.consts[q] = np.clip(np.round(c / s_) + z_, -128, 127).astype(np.int8)
                continue
            if qp.per_channel:
                raise node_error(n, "per-channel quantization of an activation (supported: per-tensor)")
            g.quant[q] = qp
            q_of.setdefault(x, []).append(q)
    rename: dict = {}
    for x, qs in q_of.items():
        first = qs[0]
        if x in g.inputs:
            for q in qs:
                synth.append(OnnxNode("__QUANTIZE_IN", f"{q}:quantize", [x], [q]))
            continue
        if x in alias:
            for q in qs:
                synth.append(OnnxNode("__REQUANT", f"{q}:requantize", [alias[x]], [q]))
            continue
        rename[x] = first
        for q in qs[1:]:
            synth.append(OnnxNode("__REQUANT", f"{q}:requantize", [first], [q]))
        if x in g.outputs:
            raise UnsupportedError(f"graph output '{x}' is float (not behind a QuantizeLinear)")
    compute = [n for n in g.nodes if id(n) not in drop]

    def res(t):
        t = alias.get(t, t)
        return rename.get(t, t)

    for n in compute:
        n.inputs = [res(t) if t else t for t in n.inputs]
        n.outputs = [rename.get(t, t) for t in n.outputs]
    for s in synth:
        s.inputs = [res(t) for t in s.inputs]
    outs = []
    for t in g.outputs:
        if t in alias:
            src = res(t)
            synth.append(OnnxNode("__DEQUANTIZE_OUT", f"{t}:dequantize", [src], [t]))
            outs.append(t)
        elif t in g.quant:
            outs.append(t)
        else:
            p = prod.get(t)
            what = f"node '{p.name}' ({p.op})" if p else "node '?'"
            raise UnsupportedError(f"graph output '{t}' of {what} is float: a QDQ model must end "
                                   "with a DequantizeLinear or a QuantizeLinear")
    g.outputs = outs
    for n in compute:
        for t in n.inputs:
            if t and t in g.inputs:
                raise node_error(n, f"reads the float input '{t}' directly (a QDQ model quantizes its "
                                    "inputs with QuantizeLinear)")
    g.nodes = synth + compute


def propagate_quant(g: OnnxGraph) -> None:
    """Quantization of the tensors no Q / DQ (or calibration) gave one, in topological order.

    Ops that keep their input's quantization pass it on; Sigmoid / Softmax outputs take the
    fixed one.  Any other float result is int8 in meaning when a QuantizeLinear re-quantizes
    it further on (onnxruntime's quantize_static leaves ReduceMean + Reshape, as torch's dynamo
    exporter writes global pooling and flatten, in float between a DQ and the next Q): it
    takes the quantization of that Q, found through ops that keep the quantization; a mean
    whose result is averaged again on the way keeps its input's (a mean lies within its
    inputs' range).  A float result that no Q re-quantizes is refused.
    """
    fixed = QuantParams(*quantizer.FIXED_SIGMOID_SOFTMAX)
    cons = g.consumers()
    for n in g.nodes:
        for o in n.outputs:
            if not o or o in g.quant or n.op == "__DEQUANTIZE_OUT":
                continue
            if n.op in KEEP:
                src = n.inputs[0]
                if src not in g.quant:
                    raise node_error(n, f"input '{src}' has no quantization parameters")
                g.quant[o] = g.quant[src]
            elif n.op in FIXED:
                g.quant[o] = fixed
            elif (q := requantized_by(g, o, cons, KEEP)) is not None:
                g.quant[o] = q
            elif (n.op in AVERAGE and n.inputs[0] in g.quant
                  and requantized_by(g, o, cons, KEEP | AVERAGE) is not None):
                g.quant[o] = g.quant[n.inputs[0]]
            else:
                raise node_error(n, f"output '{o}' is float and no QuantizeLinear re-quantizes it "
                                    "(directly or through ops that keep the quantization): the QDQ "
                                    "model is not fully quantized (quantize it with int8 activations, "
                                    "or give the float model and --calibration)")


def requantized_by(g: OnnxGraph, t: str, cons: dict, through: set):
    """The quantization of the tensor nearest to t (t included) that has one, following t's
    consumers whose op is in `through` (None if no such path reaches a quantized tensor)."""
    queue, seen = deque([t]), {t}
    while queue:
        u = queue.popleft()
        if u in g.quant:
            return g.quant[u]
        for c in cons.get(u, []):
            if c.op in through and c.inputs[0] == u:
                for o in c.outputs:
                    if o and o not in seen:
                        seen.add(o)
                        queue.append(o)
    return None
