"""Stage 2: float-graph rewrites before quantization.

BatchNormalization is folded into the preceding Conv; Relu / Clip(0, 6) / Clip(-1, 1) are fused
into the producing Conv / Gemm / MatMul / Add / Mul as a TFLite fused activation (kept in the
node's ``_activation`` attribute).
"""
from __future__ import annotations

import numpy as np

from .model import OnnxGraph, OnnxNode, node_error

FUSABLE = {"Conv", "Gemm", "MatMul", "Add", "Mul"}


def fold_batchnorm(g: OnnxGraph) -> None:
    cons, prod = g.consumers(), g.producers()
    drop = set()
    for bn in g.nodes:
        if bn.op != "BatchNormalization":
            continue
        conv = prod.get(bn.inputs[0])
        x = bn.inputs[0]
        if (conv is None or conv.op != "Conv" or len(cons.get(x, [])) != 1 or x in g.outputs
                or conv.inputs[1] not in g.consts
                or (len(conv.inputs) > 2 and conv.inputs[2] and conv.inputs[2] not in g.consts)):
            raise node_error(bn, "BatchNormalization is supported only right after a Conv with float "
                                 "constant weights (it is folded into the Conv)")
        if len(bn.outputs) > 1 and any(bn.outputs[1:]):
            raise node_error(bn, "training-mode BatchNormalization (export the model in eval mode)")
        gamma, beta, mean, var = (np.asarray(g.consts[t], np.float64) for t in bn.inputs[1:5])
        eps = float(bn.attrs.get("epsilon", 1e-5))
        k = gamma / np.sqrt(var + eps)
        w = np.asarray(g.consts[conv.inputs[1]], np.float64)
        b = (np.asarray(g.consts[conv.inputs[2]], np.float64)
             if len(conv.inputs) > 2 and conv.inputs[2] else np.zeros(w.shape[0]))
        wname, bname = conv.inputs[1] + ":bnfold", conv.name + ":bias_bnfold"
        g.consts[wname] = (w * k.reshape(-1, 1, 1, 1)).astype(np.float32)
        g.consts[bname] = ((b - mean) * k + beta).astype(np.float32)
        conv.inputs = [conv.inputs[0], wname, bname]
        conv.outputs = [bn.outputs[0]]
        drop.add(id(bn))
    g.nodes = [n for n in g.nodes if id(n) not in drop]


def activation_of(g: OnnxGraph, n: OnnxNode):
    """TFLite fused activation name of a Relu / Clip node, or None if it has none."""
    if n.op == "Relu":
        return "RELU"
    lo, hi = n.attrs.get("min"), n.attrs.get("max")
    if len(n.inputs) > 1 and n.inputs[1]:
        lo = float(np.asarray(g.consts[n.inputs[1]]).reshape(-1)[0]) if n.inputs[1] in g.consts else "?"
    if len(n.inputs) > 2 and n.inputs[2]:
        hi = float(np.asarray(g.consts[n.inputs[2]]).reshape(-1)[0]) if n.inputs[2] in g.consts else "?"
    lo = None if lo is None or (isinstance(lo, float) and lo < -3e38) else lo
    hi = None if hi is None or (isinstance(hi, float) and hi > 3e38) else hi
    table = {(0.0, None): "RELU", (0.0, 6.0): "RELU6", (-1.0, 1.0): "RELU_N1_TO_1"}
    act = table.get((None if lo is None else float(lo), None if hi is None else float(hi)))
    if act is None:
        raise node_error(n, f"Clip range [{lo}, {hi}] (supported: [0, inf) = ReLU, [0, 6] = ReLU6, "
                            "[-1, 1])")
    return act


def fuse_activations(g: OnnxGraph) -> None:
    cons, prod = g.consumers(), g.producers()
    drop = set()
    for n in g.nodes:
        if n.op not in ("Relu", "Clip"):
            continue
        act = activation_of(g, n)
        n.attrs["_activation"] = act
        x = n.inputs[0]
        p = prod.get(x)
        if (p is not None and p.op in FUSABLE and len(cons.get(x, [])) == 1
                and x not in g.outputs and p.attrs.get("_activation", "NONE") == "NONE"):
            p.attrs["_activation"] = act
            p.outputs = [n.outputs[0]]
            drop.add(id(n))
    g.nodes = [n for n in g.nodes if id(n) not in drop]
