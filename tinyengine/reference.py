"""The NumPy reference executor: the executable definition of every op.

Runs a prepared graph (node.params filled by the prepare pass) node by node through
each OpDef.reference, with TFLite's integer arithmetic.  Generated C is compared with it
and it is compared with TensorFlow Lite Micro.
"""
from __future__ import annotations

import numpy as np

from . import ops
from .ir import Graph


def run(graph: Graph, inputs: list, keep_all: bool = False):
    """Execute the graph on a list of input arrays (graph.inputs order).

    Returns the list of outputs, or with keep_all=True a dict of every tensor's value.
    """
    if len(inputs) != len(graph.inputs):
        raise ValueError(f"the model has {len(graph.inputs)} inputs, got {len(inputs)}")
    values: dict = {}
    for name, x in zip(graph.inputs, inputs):
        t = graph.tensors[name]
        x = np.asarray(x)
        if x.size != t.size:
            raise ValueError(f"input '{name}' needs shape {t.shape}, got {x.shape}")
        values[name] = x.astype(t.np_dtype, copy=False).reshape(t.shape)
    for name, t in graph.tensors.items():
        if t.is_const:
            values[name] = t.data
    for node in graph.nodes:
        opdef = ops.get(node.op)
        args = [values[t] if t is not None else None for t in node.inputs]
        outs = opdef.reference(node, graph, args)
        for name, y in zip(node.outputs, outs):
            t = graph.tensors[name]
            y = np.asarray(y)
            if y.dtype != t.np_dtype or y.size != t.size:
                raise AssertionError(f"{node}: reference produced {y.dtype}{y.shape} for "
                                     f"'{name}' which is {t.dtype}{t.shape}")
            values[name] = y.reshape(t.shape)
    if keep_all:
        return values
    return [values[name] for name in graph.outputs]
