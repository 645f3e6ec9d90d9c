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
        plain ones as indices, those with an overlap permission as (index, d_out, d_in)
        (``overlaps[(b, a)]``, ``overlaps[(a, b)]``, None where not allowed).  The same for
        every sweep (and for every size: the lifetimes decide)."""
        bufs = self.buffers
        first = np.array([b.first for b in bufs], dtype=np.int64)
        last = np.array([b.last for b in bufs], dtype=np.int64)
        alive = (first[:, None] <= last[None, :]) & (first[None, :] <= last[:, None])
        np.fill_diagonal(alive, False)
        index = {b.name: i for i, b in enumerate(bufs)}
        deltas = {(index[o], index[i]): d for (o, i), d in self.overlaps.items()
                  if o in index and i in index}
        plain = [[] for _ in bufs]
        for i, j in zip(*(a.tolist() for a in np.nonzero(alive))):
            plain[i].append(j)
        paired = [[] for _ in bufs]
        for i, j in {(min(o, i), max(o, i)) for o, i in deltas if o != i}:
            for b, a in ((i, j), (j, i)):
                if alive[b, a]:
                    paired[b].append((a, deltas.get((b, a)), deltas.get((a, b))))
        for b in range(len(bufs)):
            if paired[b]:
                mine = {a for a, *_ in paired[b]}
                plain[b] = [j for j in plain[b] if j not in mine]
        return plain, paired

    @staticmethod
    def _place(size: int, plain: list, paired: list, placed: list, sizes: list,
               mirror: bool) -> int:
        """The lowest offset of a buffer of ``size`` inside no interval forbidden by a placed
        buffer alive at the same time (open intervals of its offset; an overlap delta narrows
        the interval on the side it allows).  placed: offset by buffer index, None where not
        placed (yet)."""
        bad = []
        for j in plain:
            a_off = placed[j]
            if a_off is not None:
                bad.append((a_off - size, a_off + sizes[j]))
        for j, d_ba, d_ab in paired:
            a_off = placed[j]
            if a_off is None:
                continue
            a_size = sizes[j]
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
        return offset

    def _sweep(self, order: list, mirror: bool, conflicts: tuple) -> tuple:
        """One greedy pass: buffers in ``order`` (indices), each where _place puts it.
        Returns (offset by buffer index in the sweep's direction, top)."""
        plain, paired = conflicts
        sizes = [b.size for b in self.buffers]
        placed: list = [None] * len(sizes)
        top = 0
        for i in order:
            offset = placed[i] = self._place(sizes[i], plain[i], paired[i], placed, sizes, mirror)
            if offset + sizes[i] > top:
                top = offset + sizes[i]
        return placed, top

    def variants(self) -> list:
        """The (order key, mirrored) sweeps plan() tries, in its tie-breaking order."""
        variants = [(self.ORDERS[0], False)]
        if self.overlaps:
            variants += [(k, m) for k in self.ORDERS for m in (False, True)][1:]
        return variants

    def plan(self) -> tuple:
        conflicts = self._conflicts()
        orders: dict = {}        # buffer indices by each key, shared by both directions
        best = None
        for key, mirror in self.variants():
            if key not in orders:
                keys = [key(b) for b in self.buffers]
                orders[key] = sorted(range(len(keys)), key=keys.__getitem__)
            placed, top = self._sweep(orders[key], mirror, conflicts)
            if best is None or top < best[2]:
                best = (placed, mirror, top)
        placed, mirror, top = best
        if mirror:
            return {b.name: top - o - b.size for b, o in zip(self.buffers, placed)}, top
        return {b.name: o for b, o in zip(self.buffers, placed)}, top


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
    lay = _Layout(graph, planner, overlap, patch, fusions, deltas)
    p = PLANNERS[planner]()
    lifetimes = {}
    for name, size, lo, hi in lay.buffers():
        p.add_buffer(name, size, lo, hi)
        lifetimes[name] = (lo, hi, size)
    for out, src, d in lay.overlaps:
        p.allow_overlap(out, src, d)
    offsets, arena = p.plan()

    n = len(graph.nodes)
    tensor_offsets = {t: offsets[lay.aliases.get(t, t)] for t in lay.first}
    scratch_sizes = {name[len("scratch:"):]: size for name, (_, _, size) in lifetimes.items()
                     if name.startswith("scratch:")}
    scratch = {name: (offsets[f"scratch:{name}"], s) for name, s in scratch_sizes.items()}
    extra = [name for name in lifetimes if name in lay.extra or name.startswith("table:")]
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
    return MemoryPlan(arena, tensor_offsets, scratch, lifetimes, lay.aliases, per_layer,
                      {(o, i): d for o, i, d in lay.overlaps},
                      {name: offsets[name] for name in extra}, patch, list(fusions))


class _Layout:
    """What plan_graph places, before placing it: the tensors' buffers (roots of alias
    chains) with their lifetimes, the overlap permissions, the schedule's fixed extra buffers
    (``extra``: patch copy buffers) and, per node, its own buffers (node_buffers): the ones
    whose sizes the grants of memory.plan_memory change (scratch, expanded tables)."""

    def __init__(self, graph: Graph, planner: str, overlap: bool, patch, fusions, deltas):
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
        self.tensors = []        # (root, bytes, first, last)
        for root, (lo, hi) in roots.items():
            size = graph.tensors[root].nbytes
            if patch is not None and root in patch.sizes:
                size = patch.sizes[root]
            self.tensors.append((root, ring.get(root, size), lo, hi))
        overlaps = _overlaps(graph, roots, aliases, patch, deltas) if overlap else []
        self.overlaps = [o for o in overlaps if o[0] not in fused]   # the pair writes t, y
        self.extra = {}
        if patch is not None:
            consumers = [i for i, nd in enumerate(graph.nodes) if patch.input in nd.inputs]
            r_in = [pt.graph.tensors[patch.input].nbytes for pt in patch.patches]
            r_out = [pt.graph.tensors[patch.output].nbytes for pt in patch.patches]
            if patch.copy_in:
                self.extra["patch_in"] = (max(r_in), min(consumers), max(consumers))
            if patch.copy_out:
                self.extra["patch_out"] = (max(r_out), patch.split, patch.split)
        self.graph, self.patch, self.first, self.aliases = graph, patch, first, aliases
        self.pairs = {k: f for f in fusions for k in (f.expand, f.dw)}

    def node_buffers(self, i: int) -> list:
        """Node i's own buffers as (name, bytes, first, last), 0 bytes where it has none: in a
        patch stage its expanded per-channel table, alive over the whole stage (a bit-packed
        node's, patching.stage_channel_params), then its scratch (the kernel's plus an
        expanded table; a fused pair's over both nodes, fusion.scratch_of; a stage node's the
        largest patch's)."""
        from . import fusion

        node, patch = self.graph.nodes[i], self.patch
        out = []
        if patch is not None and i <= patch.split:
            out.append((f"table:{node.name}", int(node.params.get("rq_table_bytes", 0)), 0, patch.split))
            s, lo, hi = patch.scratch.get(node.name, 0), i, i
        elif i in self.pairs:
            f = self.pairs[i]
            s, lo, hi = fusion.scratch_of(self.graph, f).get(node.name, 0), f.expand, f.dw
        else:
            s, lo, hi = ops.scratch_total(node, self.graph), i, i
        out.append((f"scratch:{node.name}", s, lo, hi))
        return out

    def buffers(self) -> list:
        """Every buffer to place, (name, bytes, first, last): tensors, the schedule's extra
        buffers, the stage's tables, the nodes' scratch (only those of nonzero size)."""
        mine = [self.node_buffers(i) for i in range(len(self.graph.nodes))]
        tables = [b for bs in mine for b in bs if b[0].startswith("table:")]
        scratch = [b for bs in mine for b in bs if b[0].startswith("scratch:")]
        extra = [(name, size, lo, hi) for name, (size, lo, hi) in self.extra.items()]
        return self.tensors + extra + [b for b in tables + scratch if b[1]]


class Replanner:
    """The arena plan_graph gives a graph after memory.plan_memory's grants change the sizes
    of nodes' own buffers (_Layout.node_buffers: scratch, expanded tables), without planning
    it again (plan_memory tries a grant per node, dozens per model).

    The greedy planner's sweeps are kept, one per variant (GreedyPlanner.variants).  When
    buffers change size, each sweep is replayed from the first position where its order
    changed, and only a buffer that may land elsewhere is placed again: one whose size changed,
    or that is alive together with a buffer placed again at another offset or with a changed
    size (which can also move it in the order); every other buffer sees the same placed
    neighbours as before, so it lands where it was.  The arena is therefore exactly
    plan_graph's (the smallest sweep top); ``plan()`` runs plan_graph itself for the
    offsets, and checks that.  The linear planner (no reuse) just sums the sizes.
    """

    def __init__(self, graph: Graph, planner: str = "greedy", overlap: bool = True,
                 patch=None, fusions=(), deltas: dict | None = None):
        self.args = (graph, planner, overlap, patch, list(fusions), deltas)
        lay = _Layout(graph, planner, overlap, patch, fusions, deltas)
        self.layout = lay
        every = lay.tensors + [(name, size, lo, hi) for name, (size, lo, hi) in lay.extra.items()]
        self.of_node = []        # per node: the indices of its own buffers
        for i in range(len(graph.nodes)):
            mine = lay.node_buffers(i)
            self.of_node.append(list(range(len(every), len(every) + len(mine))))
            every += mine
        p = PLANNERS[planner]()
        for name, size, lo, hi in every:     # every buffer, the ones of 0 bytes too (unused)
            p.buffers.append(Buffer(name, _align(max(size, 1)), lo, hi))
        for out, src, d in lay.overlaps:
            p.allow_overlap(out, src, d)
        self.planner = p
        self.used = [size > 0 for _, size, _, _ in every]
        self.sizes = [b.size for b in p.buffers]
        self.greedy = isinstance(p, GreedyPlanner)
        self.sweeps = []    # per variant: [key, mirror, order, keys, offsets, ends, top]
        if self.greedy:
            self.conflicts = p._conflicts()
            self.near = [sorted(set(plain) | {j for j, *_ in paired})
                         for plain, paired in zip(*self.conflicts)]
            for key, mirror in p.variants():
                order = sorted((i for i, u in enumerate(self.used) if u), key=lambda i: key(p.buffers[i]))
                placed, top = p._sweep(order, mirror, self.conflicts)
                ends = [0 if o is None else o + b.size for o, b in zip(placed, p.buffers)]
                self.sweeps.append([key, mirror, order, [key(p.buffers[i]) for i in order], placed,
                                    ends, top])
        self.arena_bytes = self._arena()
        self.replans = 0

    def _arena(self) -> int:
        if self.greedy:
            return min(sw[-1] for sw in self.sweeps)
        return sum(s for s, u in zip(self.sizes, self.used) if u)

    def try_node(self, i: int) -> bool:
        """Node i's buffers resized to what its params now ask; kept, and True, where the arena
        does not grow; else put back as they were, and False."""
        self.replans += 1
        p = self.planner
        changed = {}
        for k, (_, size, _, _) in zip(self.of_node[i], self.layout.node_buffers(i)):
            new = (_align(max(size, 1)), size > 0)
            if new != (self.sizes[k], self.used[k]):
                changed[k] = new
        if not changed:
            return True
        before = {k: (self.sizes[k], self.used[k]) for k in changed}
        saved = self.sweeps      # _replay makes new sweeps
        for k, (size, used) in changed.items():
            self.sizes[k], self.used[k] = size, used
            p.buffers[k].size = size
        if self.greedy:
            self.sweeps = [self._replay(sw, changed) for sw in self.sweeps]
        arena = self._arena()
        if arena <= self.arena_bytes:
            self.arena_bytes = arena
            return True
        for k, (size, used) in before.items():
            self.sizes[k], self.used[k] = size, used
            p.buffers[k].size = size
        self.sweeps = saved
        return False

    def _replay(self, sweep: list, changed: dict) -> list:
        """The sweep after the ``changed`` buffers got their new sizes (see the class)."""
        import bisect

        key, mirror, order, keys, placed, ends, _ = sweep
        p, sizes = self.planner, self.sizes
        order, keys = list(order), list(keys)
        start = len(order)
        for k in changed:
            if k in order:
                at = order.index(k)
                start = min(start, at)
                del order[at], keys[at]
        for k in changed:
            if self.used[k]:
                kk = key(p.buffers[k])
                at = bisect.bisect_left(keys, kk)
                keys.insert(at, kk)
                order.insert(at, k)
                start = min(start, at)
        new, ends = list(placed), list(ends)
        for k in order[start:]:
            new[k] = None
        for k in changed:
            new[k], ends[k] = None, 0
        dirty = set(changed)
        for k in changed:
            dirty.update(self.near[k])
        plain, paired = self.conflicts
        for k in order[start:]:
            if k in dirty:
                new[k] = p._place(sizes[k], plain[k], paired[k], new, sizes, mirror)
                ends[k] = new[k] + sizes[k]
                if new[k] != placed[k] or k in changed:
                    dirty.update(self.near[k])
            else:
                new[k] = placed[k]
        return [key, mirror, order, keys, new, ends, max(ends, default=0)]

    def plan(self) -> MemoryPlan:
        """plan_graph of the graph as its params are now (its arena is this one's)."""
        plan = plan_graph(*self.args)
        if plan.arena_bytes != self.arena_bytes:
            raise AssertionError(f"planner: replayed sweeps give an arena of {self.arena_bytes} "
                                 f"bytes, planning again {plan.arena_bytes}")
        return plan
