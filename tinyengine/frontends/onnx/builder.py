"""The IR under construction during lowering: tensors, nodes, the ONNX -> IR name map, and the
NCHW (ONNX) <-> NHWC (IR) layout arithmetic."""
from __future__ import annotations

import numpy as np

from ...ir import Node, QuantParams, Tensor
from .model import OnnxGraph, OnnxNode

NHWC = (0, 2, 3, 1)          # NCHW array .transpose(NHWC) -> NHWC
NCHW = (0, 3, 1, 2)
AXIS_TO_NHWC = {0: 0, 1: 3, 2: 1, 3: 2}


def nhwc(shape: tuple) -> tuple:
    """The IR shape of an ONNX shape (4-D tensors are NHWC in the IR)."""
    return tuple(shape[i] for i in NHWC) if len(shape) == 4 else tuple(shape)


def same_quant(a: QuantParams, b: QuantParams) -> bool:
    return (np.float32(a.scale[0]) == np.float32(b.scale[0])
            and int(a.zero_point[0]) == int(b.zero_point[0]))


class IRBuilder:
    def __init__(self, g: OnnxGraph):
        self.g = g
        self.tensors: dict = {}
        self.nodes: list = []
        self.map: dict = {}       # ONNX activation name -> IR tensor name
        self.names: set = set()
        self.meta_layout = {"inputs": {}, "outputs": {}}
        self.consumers = g.consumers()

    def uniq(self, base: str) -> str:
        name, i = base, 1
        while name in self.tensors:
            i += 1
            name = f"{base}#{i}"
        return name

    def new(self, base: str, shape: tuple, dtype="int8", quant=None, data=None) -> str:
        name = self.uniq(base)
        self.tensors[name] = Tensor(name, shape, dtype, quant, data)
        return name

    def const(self, base: str, data: np.ndarray, dtype: str, quant=None) -> str:
        data = np.ascontiguousarray(np.asarray(data).astype(dtype))
        return self.new(base, data.shape, dtype, quant, data)

    def emit(self, op, name, inputs, outputs, attrs=None) -> Node:
        nm, i = name, 1
        while nm in self.names:
            i += 1
            nm = f"{name}#{i}"
        self.names.add(nm)
        node = Node(op, nm, list(inputs), list(outputs), dict(attrs or {}))
        self.nodes.append(node)
        return node

    def act(self, onnx_name: str) -> str:
        return self.map[onnx_name]

    def q(self, onnx_name: str) -> QuantParams:
        return self.g.quant[onnx_name]

    def out(self, n: OnnxNode, i: int = 0) -> str:
        """Create the IR tensor of an ONNX output with its own quantization."""
        o = n.outputs[i]
        name = self.new(o, nhwc(self.g.shape[o]), "int8", self.q(o))
        self.map[o] = name
        return name

    def finish(self, n: OnnxNode, written: str, i: int = 0) -> None:
        """The op wrote `written` in a quantization it chose; requantize if the ONNX output's
        differs."""
        o = n.outputs[i]
        want = self.q(o)
        if same_quant(self.tensors[written].quant, want):
            self.map[o] = written
            return
        dst = self.out(n, i)
        self.emit("QUANTIZE", f"{n.name}:requantize", [written], [dst])

    def tmp(self, n: OnnxNode, shape: tuple, quant: QuantParams, suffix: str) -> str:
        return self.new(f"{n.outputs[0]}:{suffix}", shape, "int8", quant)

    def requant_to(self, n: OnnxNode, src: str, quant: QuantParams, suffix: str) -> str:
        if same_quant(self.tensors[src].quant, quant):
            return src
        dst = self.new(f"{src}:{suffix}", self.tensors[src].shape, "int8", quant)
        self.emit("QUANTIZE", f"{n.name}:{suffix}", [src], [dst])
        return dst
