"""Host-side conversion between a model's own inputs/outputs and the device's.

A model with float input and output wraps its int8 body in QUANTIZE / DEQUANTIZE
(mcunet-vww1 does).  On a microcontroller the camera or the microphone delivers integers:
keeping a float copy of the input in SRAM only costs memory.  The ``host_io`` pass moves
those edge conversions off the device: the firmware takes and returns the int8 tensors,
and `run` / `verify` convert on the host with the very same op references, so results stay
bit-exact with TFLite Micro running the whole model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .ir import Graph, Node


@dataclass
class Adapter:
    """One model-edge conversion: a graph of one input and one output (a QUANTIZE or a
    DEQUANTIZE, with the float ops before / after it: ops/float_edge.py) run on the host."""
    graph: Graph

    def __call__(self, x: np.ndarray) -> np.ndarray:
        from . import reference

        return reference.run(self.graph, [x])[0]

    def describe(self) -> str:
        return ", then ".join(n.op.removesuffix("_F32") for n in self.graph.nodes) + " on the host"


@dataclass
class FuncAdapter:
    """A model-edge conversion that is a plain NumPy function (e.g. an NCHW <-> NHWC transpose
    of an ONNX model's input), with a label for reports."""
    fn: Callable
    label: str

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.fn(x)

    def describe(self) -> str:
        return f"{self.label} on the host"


@dataclass
class ChainAdapter:
    """Adapters applied in order.  ``graph`` is the first op adapter's graph (its QUANTIZE
    output says which float range a random input should cover)."""
    steps: list

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for step in self.steps:
            x = step(x)
        return x

    @property
    def graph(self):
        return next((s.graph for s in self.steps if isinstance(s, Adapter)), None)

    def describe(self) -> str:
        return ", then ".join(s.describe().replace(" on the host", "") for s in self.steps) + " on the host"


def transpose_adapter(perm: tuple) -> FuncAdapter:
    perm = tuple(int(p) for p in perm)
    return FuncAdapter(lambda x: np.ascontiguousarray(np.transpose(x, perm)),
                       f"TRANSPOSE {list(perm)}")


@dataclass
class HostIO:
    model_inputs: list                                  # ir.Tensor, as the user feeds them
    model_outputs: list                                 # Tensor, as the user gets them
    in_adapters: dict = field(default_factory=dict)     # index -> Adapter (model -> device)
    out_adapters: dict = field(default_factory=dict)    # index -> Adapter (device -> model)

    @classmethod
    def identity(cls, graph: Graph) -> "HostIO":
        return cls([graph.tensors[t] for t in graph.inputs], [graph.tensors[t] for t in graph.outputs])

    def to_device(self, record: list) -> list:
        return [self.in_adapters[i](x) if i in self.in_adapters else x for i, x in enumerate(record)]

    def from_device(self, outputs: list) -> list:
        return [self.out_adapters[i](y) if i in self.out_adapters else y for i, y in enumerate(outputs)]

    def describe(self) -> list:
        lines = []
        for i, a in self.in_adapters.items():
            lines.append(f"input {i} '{self.model_inputs[i].name}': {a.describe()}")
        for i, a in self.out_adapters.items():
            lines.append(f"output {i} '{self.model_outputs[i].name}': {a.describe()}")
        return lines


def _chain_adapter(nodes: list, graph: Graph) -> Adapter:
    """The nodes (a chain, in order: each reads the one before) as a host-side graph."""
    names = {t for n in nodes for t in n.inputs + n.outputs if t is not None}
    tensors = {t: graph.tensors[t] for t in graph.tensors if t in names}
    first = next(t for t in nodes[0].inputs if t is not None and not graph.tensors[t].is_const)
    return Adapter(Graph(tensors, list(nodes), [first], [nodes[-1].outputs[0]]))


def _float_step(node: Node, graph: Graph):
    """The one non-constant input of a float edge op (<OP>_F32, a float RESHAPE), else None."""
    if not (node.op.endswith("_F32") or (node.op == "RESHAPE"
                                          and graph.tensors[node.outputs[0]].dtype == "float32")):
        return None
    live = [t for t in node.inputs if t is not None and not graph.tensors[t].is_const]
    return live[0] if len(live) == 1 and len(node.outputs) == 1 else None


def _input_chain(name: str, graph: Graph, consumers: dict):
    """Float input -> float ops -> QUANTIZE, each value read once and by nothing else."""
    chain = []
    while True:
        users = consumers.get(name, [])
        if len(users) != 1 or name in graph.outputs or (chain and graph.tensors[name].dtype != "float32"):
            return None
        node = users[0]
        if node.op == "QUANTIZE":
            return chain + [node]
        if _float_step(node, graph) != name:
            return None
        chain.append(node)
        name = node.outputs[0]


def _output_chain(name: str, graph: Graph, producers: dict, consumers: dict):
    """DEQUANTIZE -> float ops -> the float output, each value read once and by nothing else."""
    chain = []
    while True:
        node = producers.get(name)
        read_by = consumers.get(name, [])
        if node is None or (read_by != [chain[0]] or name in graph.outputs if chain
                            else read_by or graph.outputs.count(name) != 1):
            return None
        if node.op == "DEQUANTIZE":
            return [node] + chain
        step = _float_step(node, graph)
        if step is None:
            return None
        chain.insert(0, node)
        name = step


def host_io(graph: Graph) -> Graph:
    """Pass: move float QUANTIZE at the inputs and DEQUANTIZE at the outputs to the host, with
    the float ops before the QUANTIZE / after the DEQUANTIZE (a chain of them)."""
    hio = HostIO.identity(graph)
    consumers = graph.consumers()
    producers = graph.producers()
    new_inputs = list(graph.inputs)
    new_outputs = list(graph.outputs)
    removed = set()
    for i, name in enumerate(graph.inputs):
        chain = _input_chain(name, graph, consumers) if graph.tensors[name].dtype == "float32" else None
        if chain:
            hio.in_adapters[i] = _chain_adapter(chain, graph)
            new_inputs[i] = chain[-1].outputs[0]
            removed.update(id(n) for n in chain)
    for i, name in enumerate(graph.outputs):
        chain = (_output_chain(name, graph, producers, consumers)
                 if graph.tensors[name].dtype == "float32" else None)
        if chain:
            hio.out_adapters[i] = _chain_adapter(chain, graph)
            new_outputs[i] = chain[0].inputs[0]
            removed.update(id(n) for n in chain)
    if not removed:
        graph.meta.setdefault("host_io", hio)
        return graph
    graph.nodes = [n for n in graph.nodes if id(n) not in removed]
    graph.inputs, graph.outputs = new_inputs, new_outputs
    used = set(graph.inputs) | set(graph.outputs)
    for n in graph.nodes:
        used.update(t for t in n.inputs + n.outputs if t is not None)
    graph.tensors = {k: v for k, v in graph.tensors.items() if k in used}
    graph.meta["host_io"] = hio
    return graph


def host_io_of(graph: Graph) -> HostIO:
    return graph.meta.get("host_io") or HostIO.identity(graph)


def random_records(graph, n: int, seed: int) -> list:
    """``n`` seeded random model-level records (each a list of one array per model input) over
    each input's full quantized range."""
    rng = np.random.default_rng(seed)
    hio = host_io_of(graph)
    consumers = graph.consumers()
    records = []
    for _ in range(n):
        rec = []
        for i, t in enumerate(hio.model_inputs):
            if t.dtype == "float32":
                q = None
                if i in hio.in_adapters and getattr(hio.in_adapters[i], "graph", None) is not None:
                    a = hio.in_adapters[i].graph
                    q = a.tensors[a.outputs[0]].quant
                for node in consumers.get(t.name, []):
                    if node.op == "QUANTIZE":
                        q = graph.tensors[node.outputs[0]].quant
                lo, hi = (-1.0, 1.0) if q is None else (q.s * (-128 - q.zp), q.s * (127 - q.zp))
                rec.append(rng.uniform(lo, hi, t.shape).astype(np.float32))
            else:
                info = np.iinfo(t.np_dtype)
                rec.append(rng.integers(info.min, info.max, t.shape, endpoint=True).astype(t.np_dtype))
        records.append(rec)
    return records


def edge_layout(graph: Graph) -> Graph:
    """Pass: layout changes at the model's edges run on the host.

    A frontend whose model layout differs from the kernels' (ONNX: NCHW, the kernels: NHWC)
    records in ``graph.meta["edge_layout"]``, for each graph input / output tensor name, the
    model-level tensor and the permutation from the model's layout to the device's (inputs)
    or from the device's to the model's (outputs).  The user then feeds and gets the model's
    own layout; the device never transposes its input.
    """
    layout = graph.meta.get("edge_layout")
    if not layout or graph.meta.get("edge_layout_done"):
        return graph
    hio = host_io_of(graph)
    for i, t in enumerate(hio.model_inputs):
        if t.name in layout.get("inputs", {}):
            model_t, perm = layout["inputs"][t.name]
            rest = [hio.in_adapters[i]] if i in hio.in_adapters else []
            hio.in_adapters[i] = ChainAdapter([transpose_adapter(perm)] + rest)
            hio.model_inputs[i] = model_t
    for i, t in enumerate(hio.model_outputs):
        if t.name in layout.get("outputs", {}):
            model_t, perm = layout["outputs"][t.name]
            first = [hio.out_adapters[i]] if i in hio.out_adapters else []
            hio.out_adapters[i] = ChainAdapter(first + [transpose_adapter(perm)])
            hio.model_outputs[i] = model_t
    graph.meta["host_io"] = hio
    graph.meta["edge_layout_done"] = True
    return graph
