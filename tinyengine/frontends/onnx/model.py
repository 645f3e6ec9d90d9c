"""The ONNX frontend's working graph: ONNX nodes, constants and per-tensor facts, in ONNX's own
(NCHW) terms, as the stages before lowering read and rewrite them."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import ModelError
from ...ops import UnsupportedError

SUPPORTED = (
    "Add", "AveragePool", "BatchNormalization", "Clip", "Concat", "Constant", "Conv",
    "DequantizeLinear", "Dropout", "Flatten", "Gemm", "GlobalAveragePool", "Identity",
    "MatMul", "MaxPool", "Mul", "Pad", "QuantizeLinear", "ReduceMean", "Relu", "Reshape",
    "Resize", "Shape", "Sigmoid", "Softmax", "Squeeze", "Transpose", "Unsqueeze",
)


@dataclass
class OnnxNode:
    """One ONNX node (or a synthetic edge node: __QUANTIZE_IN, __DEQUANTIZE_OUT, __REQUANT)."""
    op: str
    name: str
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)
    domain: str = ""


@dataclass
class OnnxGraph:
    """The model between reading and lowering; each stage fills or rewrites some fields."""
    mp: object                      # the onnx.ModelProto (calibration runs it)
    label: str                      # the file name used in messages
    opset: int
    nodes: list = field(default_factory=list)
    inputs: list = field(default_factory=list)     # float graph inputs (ONNX names)
    outputs: list = field(default_factory=list)
    consts: dict = field(default_factory=dict)     # name -> np.ndarray (float or integer)
    qconst: dict = field(default_factory=dict)     # name -> (int ndarray, QuantParams) (DQ of a constant)
    quant: dict = field(default_factory=dict)      # activation name -> QuantParams (int8)
    shape: dict = field(default_factory=dict)      # activation name -> ONNX shape
    origin: dict = field(default_factory=dict)     # synthetic name -> ONNX name (calibration lookups)
    qdq: bool = False                              # a QDQ file (else a float one)

    def consumers(self) -> dict:
        out: dict = {}
        for n in self.nodes:
            for t in n.inputs:
                if t:
                    out.setdefault(t, []).append(n)
        return out

    def producers(self) -> dict:
        return {t: n for n in self.nodes for t in n.outputs}

    def input_shape(self, n: OnnxNode, i: int):
        """The ONNX shape of input i of n (activation or constant), None if n has no such input."""
        t = n.inputs[i] if i < len(n.inputs) else None
        if not t:
            return None
        if t in self.shape:
            return self.shape[t]
        if t in self.qconst:
            return self.qconst[t][0].shape
        if t in self.consts:
            return np.shape(self.consts[t])
        raise node_error(n, f"input '{t}' has no known shape")

    def const_of(self, n: OnnxNode, i: int, what: str):
        """Input i of n as a constant array (None if absent); `what` names it in the error."""
        t = n.inputs[i] if i < len(n.inputs) else None
        if not t:
            return None
        if t in self.consts:
            return np.asarray(self.consts[t])
        raise node_error(n, f"{what} ('{t}') must be a constant")


def node_error(node: OnnxNode, what: str) -> UnsupportedError:
    return UnsupportedError(f"node '{node.name}' ({node.op}): {what}")


def toposort_nodes(nodes: list) -> list:
    """Nodes in an order where every producer comes before its consumers."""
    prod = {t: n for n in nodes for t in n.outputs}
    order, state = [], {}

    def visit(n):
        stack = [(n, iter([prod[t] for t in n.inputs if t in prod]))]
        state[id(n)] = 1
        while stack:
            node, deps = stack[-1]
            dep = next(deps, None)
            if dep is None:
                stack.pop()
                state[id(node)] = 2
                order.append(node)
            elif state.get(id(dep)) is None:
                state[id(dep)] = 1
                stack.append((dep, iter([prod[t] for t in dep.inputs if t in prod])))
            elif state.get(id(dep)) == 1:
                raise ModelError(f"the graph has a cycle through node '{dep.name}'")

    for n in nodes:
        if id(n) not in state:
            visit(n)
    return order
