"""Graph passes.  Each pass is a function Graph -> Graph, listed in order by compiler.PASSES."""
from __future__ import annotations

from . import ops
from .ir import Graph


def check_ops(graph: Graph) -> Graph:
    """Every node must be an op TinyEngine supports, with attrs/dtypes/quantization it supports."""
    for node in graph.nodes:
        ops.get(node.op).check(node, graph)
    return graph


def remove_dead_nodes(graph: Graph) -> Graph:
    """Drop nodes whose outputs nothing reads (and that are not model outputs)."""
    needed = set(graph.outputs)
    keep = []
    for node in reversed(graph.nodes):
        if any(t in needed for t in node.outputs):
            keep.append(node)
            needed.update(t for t in node.inputs if t is not None)
    graph.nodes = list(reversed(keep))
    used = set(graph.inputs) | needed
    graph.tensors = {k: v for k, v in graph.tensors.items() if k in used}
    return graph


def prepare(graph: Graph) -> Graph:
    """Compute each node's compile-time kernel parameters into node.params."""
    for node in graph.nodes:
        node.params = ops.get(node.op).prepare(node, graph)
    return graph
