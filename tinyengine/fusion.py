"""Row-streamed fusion of a 1x1 expand CONV_2D with the DEPTHWISE_CONV_2D reading it.

In an inverted-residual block the 1x1 expand conv's output (e.g. 40x40x48 in MCUNet-vww1)
is the largest tensor, and a layer-by-layer executor must hold it whole.  A fused pair
never does: the depthwise conv runs one output row at a time, and the expand conv computes
just the input rows that row needs into a *ring* of ``(k_h - 1) * dil_h + 1`` rows in the
arena.  The ring holds the row's window contiguously: before each output row the rows still
needed are moved to its front (one te_move_s8 of ``ring - stride`` rows, the same every row),
then the expand conv computes the rows entering the window behind them (the 1x1 kernels on
a band of rows: NHWC rows are contiguous, a 1x1 stride-1 conv never pads), then the
depthwise kernel runs on the ring with ``out_h = 1`` and the explicit padding of that row's
region.  Same arithmetic, other schedule: bit-exact.

Each band node is the model's node re-derived on its region by
:func:`tinyengine.regions.region_graph` (as the patches of a patch stage): top padding only where the
row's window starts above the image, bottom padding read past ``in_h`` as at the border.

The planner sees the pair as one step (tinyengine/planner.py ``plan_graph(fusions=..)``):
the expand conv's input lives until the depthwise step, the depthwise output from the
expand step, the intermediate tensor is only the ring.  The compiler keeps a fusion only
where it lowers the planned arena by at least MIN_GAIN (:func:`choose`);
``CompileOptions(fuse=False)`` / ``--no-fuse`` switches it off.  Its C: tinyengine/codegen/
fused_pair.py (consecutive rows whose C differs only in integer literals become one loop).
A node's per-channel table stored bit-packed
(memory.grant_compact_params) is expanded once, before the first row, at the start of the
node's scratch, which lives over the whole pair (:func:`scratch_of`).

Schedule layer: this module decides and describes; the pair's C comes from
tinyengine/codegen/fused_pair.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .ir import Graph
from .regions import Region, input_region, region_graph


# a fusion must lower the arena by at least this fraction: it costs per-row calls and moves,
# and a smaller arena leaves less room for the optional kernel scratch that is granted only
# where it is free (memory.grant_optional_scratch), so a small gain costs more than it saves
MIN_GAIN = 0.10


@dataclass
class Step:
    """One depthwise output row ``oy``: the ring holds the row's unclipped window (ring row p
    is image row ``oy * stride_h - pad_top + p``); expand image rows ``[new0, new0 + new)``
    into ring rows from ``pos`` on, run the depthwise conv on ring rows from ``dw_pos`` on."""
    oy: int
    new0: int
    new: int
    pos: int
    dw_pos: int
    expand: Graph | None = field(repr=False)   # the expand conv on the new rows (None: new == 0)
    dw: Graph = field(repr=False)              # the depthwise conv for row oy


@dataclass
class Fusion:
    expand: int             # node index of the 1x1 conv (the depthwise conv is expand + 1)
    tensor: str             # the expanded tensor, held only as the ring
    ring_rows: int          # the depthwise window's height (k_h - 1) * dil_h + 1
    row_bytes: int
    move: int               # rows dropped from the ring's front before each row (0: no move)
    steps: list = field(default_factory=list, repr=False)
    prime: tuple = ()       # (first row, rows, ring row): expanded once before the first step
    prime_graph: Graph | None = field(default=None, repr=False)

    @property
    def dw(self) -> int:
        return self.expand + 1

    @property
    def ring_bytes(self) -> int:
        return self.ring_rows * self.row_bytes

    def describe(self, graph: Graph) -> dict:
        return {"expand": graph.nodes[self.expand].name, "depthwise": graph.nodes[self.dw].name,
                "tensor": self.tensor, "ring_rows": self.ring_rows, "ring_bytes": self.ring_bytes}


def _is_expand(node, graph) -> bool:
    p = node.params
    if node.op != "CONV_2D" or len(node.outputs) != 1 or p.get("batches") != 1:
        return False
    return ((p.get("k_h"), p.get("k_w"), p.get("stride_h"), p.get("stride_w"),
             p.get("pad_top"), p.get("pad_left")) == (1, 1, 1, 1, 0, 0)
            and p.get("in_h") == p.get("out_h") and p.get("in_w") == p.get("out_w"))


def candidates(graph: Graph, after: int = -1) -> list:
    """Every pair nodes[i], nodes[i+1] (i > after) that can run fused: a 1x1 stride-1 conv
    whose output only the next node, a depthwise conv, reads."""
    return [build(graph, i) for i in _pair_indices(graph, after)]


def _pair_indices(graph: Graph, after: int) -> list:
    """The i of candidates(graph, after), before their row schedules are built."""
    consumers = graph.consumers()
    found = []
    for i in range(max(after + 1, 0), len(graph.nodes) - 1):
        a, b = graph.nodes[i], graph.nodes[i + 1]
        if not _is_expand(a, graph) or b.op != "DEPTHWISE_CONV_2D" or b.params.get("batches") != 1:
            continue
        t = a.outputs[0]
        if b.inputs[0] != t or t in graph.outputs or len(consumers.get(t, [])) != 1:
            continue
        if a.inputs[0] is None or graph.tensors[a.inputs[0]].is_const:
            continue
        found.append(i)
    return found


def build(graph: Graph, i: int) -> Fusion:
    """The row schedule of the pair nodes[i] (1x1 conv) -> nodes[i+1] (depthwise conv).

    Every step is the same in the steady state: move the ring's last ``ring - stride`` rows
    to its front, expand the ``stride`` rows that enter the window, run the depthwise row;
    at the borders only the counts and positions differ (rows outside the image are never
    computed: the kernel pads them).  The rows the first step keeps are expanded before it
    (``prime``) at the ring rows the first move takes them from."""
    ex, dw = graph.nodes[i], graph.nodes[i + 1]
    x, t, y = ex.inputs[0], ex.outputs[0], dw.outputs[0]
    _, h, w, c = graph.tensors[t].shape
    _, oh, ow, _ = graph.tensors[y].shape
    p = dw.params
    eff = (p["k_h"] - 1) * p["dil_h"] + 1
    s = p["stride_h"]
    move = s if eff > s else 0

    def band(r0, r1):
        b = Region(r0, r1, 0, w)
        return region_graph(graph, [ex], {x: b, t: b}, [x], [t])

    u0 = -p["pad_top"]
    prime, prime_graph = (), None
    if move:
        r0, r1 = max(0, u0), min(h, u0 + eff - s)    # rows step 0 keeps
        if r1 > r0:
            prime = (r0, r1 - r0, r0 - (u0 - s))
            prime_graph = band(r0, r1)
    steps = []
    done = prime[0] + prime[1] if prime else 0        # image rows expanded so far: [0, done)
    for oy in range(oh):
        u = oy * s - p["pad_top"]
        r_in = input_region(dw, graph, Region(oy, oy + 1, 0, ow))
        lo, hi = r_in.y0, r_in.y1
        new0 = max(done, lo)
        new = max(0, hi - new0)
        exg = band(new0, hi) if new else None
        dwg = region_graph(graph, [dw], {t: Region(lo, hi, 0, w), y: Region(oy, oy + 1, 0, ow)},
                           [t], [y])
        steps.append(Step(oy, new0, new, new0 - u, lo - u, exg, dwg))
        done = max(done, hi)
    return Fusion(i, t, eff, w * c, move, steps, prime, prime_graph)


def choose(graph: Graph, plan_fn, base, after: int = -1) -> tuple:
    """(fusions, plan): all useful candidates fused, then each dropped again where the arena
    does not grow without it; none when fusing does not lower ``base`` (the unfused plan)
    by at least MIN_GAIN.
    plan_fn(fusions) -> MemoryPlan."""
    # only where the depthwise output is smaller than the expanded tensor (stride > 1, ...):
    # otherwise a tensor as large stays whole and any gain is placement noise, paid for
    # with the per-row calls and moves
    # (checked before the pairs' row schedules are built: most depthwise convs have stride 1)
    chosen = [build(graph, i) for i in _pair_indices(graph, after)
              if graph.tensors[graph.nodes[i + 1].outputs[0]].nbytes
              < graph.tensors[graph.nodes[i].outputs[0]].nbytes]
    if not chosen:
        return [], base
    plan = plan_fn(chosen)
    if plan.arena_bytes > base.arena_bytes * (1 - MIN_GAIN):
        return [], base
    for f in list(chosen):
        rest = [g for g in chosen if g is not f]
        trial = plan_fn(rest) if rest else base
        if trial.arena_bytes <= plan.arena_bytes:
            chosen, plan = rest, trial
    return chosen, plan


def _bands(f: Fusion) -> list:
    """The expand conv's band graphs (prime first)."""
    return ([f.prime_graph] if f.prime_graph is not None else []) + \
        [st.expand for st in f.steps if st.expand is not None]


def scratch_of(graph: Graph, f: Fusion) -> dict:
    """node name -> scratch bytes of the fused step (alive over both node indices): the
    kernel's, after the node's expanded per-channel table where it is stored bit-packed
    (``rq_table_bytes``: expanded once before the first row, read by every row)."""
    from . import ops

    ex, dw = graph.nodes[f.expand], graph.nodes[f.dw]
    out = {}
    s = max((ops.get(ex.op).scratch_bytes(g.nodes[0], g) for g in _bands(f)), default=0)
    s += int(ex.params.get("rq_table_bytes", 0))
    if s:
        out[ex.name] = s
    s = ops.get(dw.op).scratch_bytes(dw, graph)   # the whole node's (granted) scratch
    s += int(dw.params.get("rq_table_bytes", 0))
    if s:
        out[dw.name] = s
    return out


def pair_channel_params(graph: Graph, f: Fusion, k: int):
    """The per-channel table (chanpack.ChannelParams) of node k of the pair (f.expand or
    f.dw) where every call of the pair reads the whole node's table, so that one copy
    expanded before the first row serves them all; else None (the table stays in Flash)."""
    from . import ops

    subs = _bands(f) if k == f.expand else [st.dw for st in f.steps]
    return ops.whole_table_in_every_call(graph.nodes[k], [g.nodes[0] for g in subs])
