"""Memory planning: place every buffer the inference needs in one static arena.

The interface is TFLite Micro's: buffers are added with a size and the first and last
step (node index) at which they are alive; the planner returns an offset for each and
the arena size.  Two planners share it:

* :class:`LinearPlanner`  no reuse at all: the baseline every strategy is compared with.
* :class:`GreedyPlanner`  largest buffers first, each at the lowest offset where it does
  not collide with a buffer alive at the same time (TFLM's greedy strategy).

One addition to TFLM's interface: ``allow_overlap(out, inp, max_delta)`` says that buffer
``out`` may start at ``offset(inp) + d`` for any ``d <= max_delta`` although both are alive
at the same step (an op whose kernel streams its output over its own consumed input, see
tinyengine/overlap.py).  The greedy planner uses it; the linear baseline ignores it.

:func:`plan_graph` derives the buffers of a graph (activation tensors, aliases of
in-place ops and reshapes, per-node scratch) and returns a :class:`MemoryPlan`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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
        self.overlaps: dict = {}   # (out, inp) -> max_delta (aligned down)

    def allow_overlap(self, out: str, inp: str, max_delta: int) -> None:
        self.overlaps[(out, inp)] = max_delta // ALIGN * ALIGN

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
    """TFLM's greedy placement, tried in a few orders and in both arena directions.

    Overlap permissions are directional (an output usually starts before its input), so
    the same greedy sweep is also run on the mirrored arena (offset' = top - offset - size),
    and with buffers taken by first use as well as by size; the smallest arena wins
    (ties: the first variant, TFLM's order).  Without overlaps the first variant is TFLM's.
    """

    ORDERS = (lambda b: (-b.size, b.first, b.name), lambda b: (b.first, -b.size, b.name),
              lambda b: (-b.last, -b.size, b.name), lambda b: (-b.first, -b.size, b.name))

    def _conflicts(self) -> tuple:
        """Per buffer (by index), the other buffers alive at a common step: (plain, paired),
        plain ones as (index, size), those with an overlap permission as (index, size, d_out,
        d_in) (``overlaps[(b, a)]``, ``overlaps[(a, b)]``, None where not allowed).  The same
        for every sweep."""
        bufs = self.buffers
        first = np.array([b.first for b in bufs], dtype=np.int64)
        last = np.array([b.last for b in bufs], dtype=np.int64)
        alive = (first[:, None] <= last[None, :]) & (first[None, :] <= last[:, None])
        np.fill_diagonal(alive, False)
        index = {b.name: i for i, b in enumerate(bufs)}
        deltas = {(index[o], index[i]): d for (o, i), d in self.overlaps.items()
                  if o in index and i in index}
        sizes = [b.size for b in bufs]
        plain = [[] for _ in bufs]
        for i, j in zip(*(a.tolist() for a in np.nonzero(alive))):
            plain[i].append((j, sizes[j]))
        paired = [[] for _ in bufs]
        for i, j in {(min(o, i), max(o, i)) for o, i in deltas if o != i}:
            for b, a in ((i, j), (j, i)):
                if alive[b, a]:
                    paired[b].append((a, sizes[a], deltas.get((b, a)), deltas.get((a, b))))
        for b in range(len(bufs)):
            if paired[b]:
                mine = {a for a, *_ in paired[b]}
                plain[b] = [e for e in plain[b] if e[0] not in mine]
        return plain, paired

    def _sweep(self, order: list, mirror: bool, conflicts: tuple) -> tuple:
        """One greedy pass: buffers in ``order`` (indices), each at the lowest offset inside no
        interval forbidden by a placed buffer alive at the same time (open intervals of b's
        offset; an overlap delta narrows the interval on the side it allows)."""
        bufs = self.buffers
        plain, paired = conflicts
        placed: list = [None] * len(bufs)     # offset by buffer index, None until placed
        top = 0
        for i in order:
            size = bufs[i].size
            bad = []
            for j, a_size in plain[i]:
                a_off = placed[j]
                if a_off is not None:
                    bad.append((a_off - size, a_off + a_size))
            for j, a_size, d_ba, d_ab in paired[i]:
                a_off = placed[j]
                if a_off is None:
                    continue
                lo, hi = a_off - size, a_off + a_size
                if d_ba is not None:   # b = output, a = its input (real: b.off <= a.off + d)
                    if mirror:
                        hi = min(hi, a_off + a_size - size - d_ba)
                    else:
                        lo = max(lo, a_off + d_ba)
                if d_ab is not None:   # a = output, b = its input (real: b.off >= a.off - d)
                    if mirror:
                        lo = max(lo, a_off + a_size - size + d_ab)
                    else:
                        hi = min(hi, a_off - d_ab)
                bad.append((lo, hi))
            bad.sort()
            offset = 0
            for lo, hi in bad:          # sweep: lowest offset inside no forbidden interval
                if hi <= lo:
                    continue
                if offset <= lo:
                    break
                if hi > offset:
                    offset = hi
            placed[i] = offset
            if offset + size > top:
                top = offset + size
        if mirror:
            return {b.name: top - o - b.size for b, o in zip(bufs, placed)}, top
        return {b.name: o for b, o in zip(bufs, placed)}, top

    def plan(self) -> tuple:
        variants = [(self.ORDERS[0], False)]
        if self.overlaps:
            variants += [(k, m) for k in self.ORDERS for m in (False, True)][1:]
        conflicts = self._conflicts()
        orders: dict = {}        # buffer indices by each key, shared by both directions
        best = None
        for key, mirror in variants:
            if key not in orders:
                keys = [key(b) for b in self.buffers]
                orders[key] = sorted(range(len(keys)), key=keys.__getitem__)
            offsets, top = self._sweep(orders[key], mirror, conflicts)
            if best is None or top < best[1]:
                best = (offsets, top)
        return best


PLANNERS = {"greedy": GreedyPlanner, "linear": LinearPlanner}


@dataclass
class MemoryPlan:
    arena_bytes: int
    offsets: dict                   # tensor name -> arena offset (aliases share their root's offset)
    scratch: dict                   # node name -> (offset, bytes)
    lifetimes: dict                 # buffer name -> (first, last, bytes)
    aliases: dict = field(default_factory=dict)   # tensor -> tensor whose memory it reuses
    per_layer: list = field(default_factory=list)  # per node: live bytes and arena high-water mark
    overlaps: dict = field(default_factory=dict)   # (out buffer, in buffer) -> max start delta
    extra: dict = field(default_factory=dict)      # patch copy buffers, stage tables: name -> offset
    patch: object = None                           # patching.PatchSchedule or None
    fusions: list = field(default_factory=list)    # fusion.Fusion: expand -> depthwise run fused

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


def _overlaps(graph: Graph, roots: dict, aliases: dict, patch=None, deltas=None) -> list:
    """(out root, in root, max_delta) for every node whose output may overlap a dying input.
    deltas: overlap.max_delta by (node index, input index), filled in as they are computed
    (see plan_graph)."""
    from . import overlap

    deltas = {} if deltas is None else deltas
    found = []
    for i, node in enumerate(graph.nodes):
        if len(node.outputs) != 1:
            continue
        out = aliases.get(node.outputs[0], node.outputs[0])
        if roots[out][0] != i:
            continue
        for idx, t in enumerate(node.inputs):
            if t is None or graph.tensors[t].is_const:
                continue
            src = aliases.get(t, t)
            if src == out or roots[src][1] != i:
                continue  # read again later (or an output): must survive this node
            if patch is not None and i <= patch.split:
                d = patch.overlaps.get((i, idx))       # the worst patch's delta
            elif (i, idx) in deltas:
                d = deltas[(i, idx)]
            else:
                d = deltas[(i, idx)] = overlap.max_delta(node, graph, idx)
            if d is not None:
                found.append((out, src, d))
    return found


def plan_graph(graph: Graph, planner: str = "greedy", overlap: bool = True,
               patch=None, fusions=(), deltas: dict | None = None) -> MemoryPlan:
    """Plan every buffer of a prepared graph.  overlap=False keeps each op's input and output
    apart (a plain layer-by-layer plan).  patch: a patching.PatchSchedule: the stage's
    tensors get patch-sized buffers, the model input and the split tensor stay whole and
    alive over the whole stage, plus the copy-in / copy-out buffers of a 2-D grid and the
    expanded per-channel tables of the stage's bit-packed nodes (``table:NODE``).
    fusions: fusion.Fusion pairs run as one step: the expand conv's input alive until the
    depthwise conv, the depthwise output from the expand conv on, the expanded tensor only
    its ring, the pair's scratch over both nodes, no overlap or alias for the pair.
    deltas: a dict kept by a caller that plans the same graph again and again, the overlap
    analysis (overlap.max_delta by node and input index) cached in it: the deltas depend on
    the nodes' ops, shapes and kernels only, not on the scratch sizes and packed tables
    memory.plan_memory grants between replans."""
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
    if patch is not None:
        last[patch.input] = max(last[patch.input], patch.split)
        first[patch.output] = 0
    fused = set()            # tensors of fused pairs: no alias, no overlap
    for f in fusions:
        ex, dw = graph.nodes[f.expand], graph.nodes[f.dw]
        last[ex.inputs[0]] = max(last[ex.inputs[0]], f.dw)
        first[dw.outputs[0]] = min(first[dw.outputs[0]], f.expand)
        fused |= {f.tensor, dw.outputs[0]}

    aliases = _aliases(graph, last)
    if patch is not None:   # patch buffers and whole tensors never share memory
        aliases = {d: r for d, r in aliases.items()
                   if d != patch.output and r != patch.input and d not in patch.sizes
                   and r not in patch.sizes}
    aliases = {d: r for d, r in aliases.items() if d not in fused}
    ring = {f.tensor: f.ring_bytes for f in fusions}
    roots: dict = {}
    for t in first:
        root = aliases.get(t, t)
        lo, hi = roots.get(root, (first[t], last[t]))
        roots[root] = (min(lo, first[t]), max(hi, last[t]))

    p = PLANNERS[planner]()
    lifetimes = {}
    for root, (lo, hi) in roots.items():
        size = graph.tensors[root].nbytes
        if patch is not None and root in patch.sizes:
            size = patch.sizes[root]
        size = ring.get(root, size)
        p.add_buffer(root, size, lo, hi)
        lifetimes[root] = (lo, hi, size)
    overlaps = _overlaps(graph, roots, aliases, patch, deltas) if overlap else []
    overlaps = [o for o in overlaps if o[0] not in fused]   # the pair writes t, y
    for out, src, d in overlaps:
        p.allow_overlap(out, src, d)
    scratch_sizes = {}
    extra = {}
    if patch is not None:
        consumers = [i for i, nd in enumerate(graph.nodes) if patch.input in nd.inputs]
        r_in = [pt.graph.tensors[patch.input].nbytes for pt in patch.patches]
        r_out = [pt.graph.tensors[patch.output].nbytes for pt in patch.patches]
        if patch.copy_in:
            extra["patch_in"] = (max(r_in), min(consumers), max(consumers))
        if patch.copy_out:
            extra["patch_out"] = (max(r_out), patch.split, patch.split)
        # a stage node's bit-packed per-channel table is expanded once, before the first
        # patch, and read by every patch (patching.stage_channel_params)
        for node in graph.nodes[:patch.split + 1]:
            if node.params.get("rq_table_bytes"):
                extra[f"table:{node.name}"] = (int(node.params["rq_table_bytes"]), 0, patch.split)
    for name, (size, lo, hi) in extra.items():
        p.add_buffer(name, size, lo, hi)
        lifetimes[name] = (lo, hi, size)
    from . import fusion as fu
    pair_scratch = {}        # node index -> (bytes, first, last) for fused pairs
    for f in fusions:
        sizes = fu.scratch_of(graph, f)
        for k in (f.expand, f.dw):
            pair_scratch[k] = (sizes.get(graph.nodes[k].name, 0), f.expand, f.dw)
    for i, node in enumerate(graph.nodes):
        s = ops.scratch_total(node, graph)
        if patch is not None and i <= patch.split:
            s = patch.scratch.get(node.name, 0)
        lo, hi = i, i
        if i in pair_scratch:
            s, lo, hi = pair_scratch[i]
        if s:
            scratch_sizes[node.name] = s
            p.add_buffer(f"scratch:{node.name}", s, lo, hi)
            lifetimes[f"scratch:{node.name}"] = (lo, hi, s)
    offsets, arena = p.plan()

    tensor_offsets = {t: offsets[aliases.get(t, t)] for t in first}
    scratch = {name: (offsets[f"scratch:{name}"], s) for name, s in scratch_sizes.items()}
    # per node: the buffers alive at its step (nodes x buffers), their bytes and highest end
    spans = np.array([(lo, hi, offsets[b], _align(size)) for b, (lo, hi, size) in lifetimes.items()],
                     dtype=np.int64).reshape(-1, 4)
    step = np.arange(n)[:, None]
    live = (spans[:, 0] <= step) & (step <= spans[:, 1])
    live_bytes = (live * spans[:, 3]).sum(axis=1)
    high_water = (live * (spans[:, 2] + spans[:, 3])).max(axis=1, initial=0)
    per_layer = [{"node": node.name, "op": node.op,
                  "live_bytes": int(live_bytes[i]), "arena_high_water": int(high_water[i]),
                  "scratch_bytes": scratch_sizes.get(node.name, 0)}
                 for i, node in enumerate(graph.nodes)]
    return MemoryPlan(arena, tensor_offsets, scratch, lifetimes, aliases, per_layer,
                      {(o, i): d for o, i, d in overlaps},
                      {name: offsets[name] for name in extra}, patch, list(fusions))
