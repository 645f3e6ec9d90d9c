"""Stage 4: the quantized OnnxGraph -> the IR's TFLite-style int8 Graph (NHWC), one lowering
function per ONNX op, validated."""
from __future__ import annotations

from pathlib import Path

from ...ir import Graph, toposort
from .builder import IRBuilder
from .lower_compute import COMPUTE_LOWERINGS
from .lower_layout import LAYOUT_LOWERINGS
from .model import SUPPORTED, OnnxGraph, node_error

LOWERINGS = {**COMPUTE_LOWERINGS, **LAYOUT_LOWERINGS}


def lower(g: OnnxGraph) -> Graph:
    b = IRBuilder(g)
    for n in g.nodes:
        fn = LOWERINGS.get(n.op)
        if fn is None:
            raise node_error(n, f"is not supported; supported ONNX operators: {', '.join(SUPPORTED)}")
        fn(b, n)
    g_inputs = [b.map[x] for x in g.inputs if x in b.map]
    g_outputs = [b.map[y] for y in g.outputs]
    nodes = toposort(b.nodes, g_inputs, b.tensors)
    graph = Graph(b.tensors, nodes, g_inputs, g_outputs,
                  name=Path(g.label).stem if g.label else "model",
                  meta={"source": g.label, "format": "onnx", "edge_layout": b.meta_layout,
                        "onnx_qdq": g.qdq})
    graph.validate()
    return graph
