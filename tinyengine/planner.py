"""Memory planning: place every buffer the inference needs in one static arena.

The interface is TFLite Micro's: buffers are added with a size and the first and last
step (node index) at which they are alive; the planner returns an offset for each and
the arena size.  Two planners share it:

* :class:`LinearPlanner`  no reuse at all: the baseline every strategy is compared with.
* :class:`GreedyPlanner`  largest buffers first, each at the lowest offset where it does
  not collide with a buffer alive at the same time (TFLM's greedy strategy).

:func:`plan_graph` derives the buffers of a graph (activation tensors, aliases of
in-place ops and reshapes, per-node scratch) and returns a :class:`MemoryPlan`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import ops
from .ir import Graph

ALIGN = 16


def _align(n: int, a: int = ALIGN) -> int:
    return (n + a - 1) // a * a


@dataclass
class Buffer:
    name: str
    size: int
    first: int
    last: int


class MemoryPlanner:
    """Base interface: add_buffer(), then plan() -> (offsets by name, arena bytes)."""

    def __init__(self) -> None:
        self.buffers: list = []

    def add_buffer(self, name: str, size: int, first: int, last: int) -> None:
        if last < first:
            raise ValueError(f"buffer '{name}': last use {last} before first use {first}")
        self.buffers.append(Buffer(name, _align(max(size, 1)), first, last))

    def plan(self) -> tuple:
        raise NotImplementedError


class LinearPlanner(MemoryPlanner):
    def plan(self) -> tuple:
        offsets, top = {}, 0
        for b in self.buffers:
            offsets[b.name] = top
            top += b.size
        return offsets, top


class GreedyPlanner(MemoryPlanner):
    def plan(self) -> tuple:
        order = sorted(self.buffers, key=lambda b: (-b.size, b.first, b.name))
        placed: list = []  # (offset, end, first, last)
        offsets, top = {}, 0
        for b in order:
            live = sorted((o, e) for o, e, f, l in placed if f <= b.last and b.first <= l)
            offset = 0
            for o, e in live:
                if offset + b.size <= o:
                    break
                offset = max(offset, e)
            offsets[b.name] = offset
            placed.append((offset, offset + b.size, b.first, b.last))
            top = max(top, offset + b.size)
        return offsets, top


PLANNERS = {"greedy": GreedyPlanner, "linear": LinearPlanner}


@dataclass
class MemoryPlan:
    arena_bytes: int
    offsets: dict                   # tensor name -> arena offset (aliases share their root's offset)
    scratch: dict                   # node name -> (offset, bytes)
    lifetimes: dict                 # buffer name -> (first, last, bytes)
    aliases: dict = field(default_factory=dict)   # tensor -> tensor whose memory it reuses
    per_layer: list = field(default_factory=list)  # per node: live bytes and arena high-water mark

    def same_buffer(self, a: str, b: str) -> bool:
        return a in self.offsets and b in self.offsets and self.offsets[a] == self.offsets[b]


def _aliases(graph: Graph, last_use: dict) -> dict:
    """Outputs that can live in their input's memory: reshapes and in-place elementwise ops."""
    aliases: dict = {}
    outputs = set(graph.outputs)
    inputs = set(graph.inputs)
    for i, node in enumerate(graph.nodes):
        opdef = ops.get(node.op)
        if node.op != "RESHAPE" and not opdef.inplace:
            continue
        src, dst = node.inputs[0], node.outputs[0]
        if src is None or graph.tensors[src].is_const:
            continue
        if last_use.get(src) != i or src in outputs:
            continue  # still read later (or must survive): cannot be overwritten
        if node.op != "RESHAPE" and (src in inputs or dst in outputs):
            continue  # keep the model's I/O buffers distinct from its internals' in-place writes
        if graph.tensors[src].nbytes != graph.tensors[dst].nbytes:
            continue
        aliases[dst] = aliases.get(src, src)
    return aliases


def plan_graph(graph: Graph, planner: str = "greedy") -> MemoryPlan:
    n = len(graph.nodes)
    first: dict = {t: 0 for t in graph.inputs}
    last: dict = {}
    for i, node in enumerate(graph.nodes):
        for t in node.outputs:
            first.setdefault(t, i)
            last.setdefault(t, i)
        for t in node.inputs:
            if t is not None and not graph.tensors[t].is_const:
                last[t] = i
    for t in graph.outputs:
        last[t] = n  # outputs stay valid after te_invoke() returns
    for t in graph.inputs:
        last.setdefault(t, 0)

    aliases = _aliases(graph, last)
    roots: dict = {}
    for t in first:
        root = aliases.get(t, t)
        lo, hi = roots.get(root, (first[t], last[t]))
        roots[root] = (min(lo, first[t]), max(hi, last[t]))

    p = PLANNERS[planner]()
    lifetimes = {}
    for root, (lo, hi) in roots.items():
        size = graph.tensors[root].nbytes
        p.add_buffer(root, size, lo, hi)
        lifetimes[root] = (lo, hi, size)
    scratch_sizes = {}
    for i, node in enumerate(graph.nodes):
        s = ops.get(node.op).scratch_bytes(node, graph)
        if s:
            scratch_sizes[node.name] = s
            p.add_buffer(f"scratch:{node.name}", s, i, i)
            lifetimes[f"scratch:{node.name}"] = (i, i, s)
    offsets, arena = p.plan()

    tensor_offsets = {t: offsets[aliases.get(t, t)] for t in first}
    scratch = {name: (offsets[f"scratch:{name}"], s) for name, s in scratch_sizes.items()}
    per_layer = []
    for i, node in enumerate(graph.nodes):
        live = [(offsets[b], _align(size)) for b, (lo, hi, size) in lifetimes.items() if lo <= i <= hi]
        per_layer.append({
            "node": node.name, "op": node.op,
            "live_bytes": sum(s for _, s in live),
            "arena_high_water": max((o + s for o, s in live), default=0),
            "scratch_bytes": scratch_sizes.get(node.name, 0),
        })
    return MemoryPlan(arena, tensor_offsets, scratch, lifetimes, aliases, per_layer)
