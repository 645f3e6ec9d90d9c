"""The memory plan: every technique that lowers the arena, applied in order.

Memory-plan layer: above the schedules (patching.py, fusion.py decide what can run in
parts) and the arena planner (planner.py places buffers); below the C renderers, which
follow the plan.  :func:`plan_memory` is the one entry point; it decides, for a prepared
graph (after the passes):

1. the schedule: a patch-based first stage where ``patch`` / ``sram_limit`` ask for one
   (:func:`plan_schedule`);
2. the 1x1 expand -> depthwise pairs that run fused row by row, after the patch stage,
   where that lowers the arena (``fuse``; fusion.choose);
3. the per-channel tables stored bit-packed in Flash where their expanded copy fits in the
   arena as it is (``compact_params``; :func:`grant_compact_params`);
4. the optional kernel scratch that speeds kernels up where the arena stays the same
   (:func:`grant_optional_scratch`);
5. tables packed without exception lists where those save less than their decoder
   (:func:`drop_unpaying_exceptions`).

Steps 3 to 5 write the nodes' params (``rq_packed``, ``rq_table_bytes``, ``scratch_bytes``),
which codegen reads: plan a graph once.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import fusion, ops, patching, planner
from .errors import FitError
from .ir import Graph
from .ops import chanpack
from .ops.conv import ACC_INIT_VARIES
from .planner import MemoryPlan


@dataclass(frozen=True)
class PlanOptions:
    """What plan_memory may do (all techniques on by default; switch one off to measure it)."""
    planner: str = "greedy"         # "greedy" or "linear" (no reuse: the baseline)
    overlap: bool = True            # outputs may start inside their consumed input
    fuse: bool = True               # 1x1 expand -> depthwise row-streamed where it lowers the arena
    compact_params: bool = True     # per-channel parameters bit-packed in Flash where free in SRAM
    patch: str | None = None        # None, "auto" or "RxC@LAYER": patch-based first stage
    sram_limit: int | None = None   # bytes of peak SRAM to fit (picks the fastest schedule)


def plan_memory(graph: Graph, options: PlanOptions | None = None) -> MemoryPlan:
    """The arena plan of a prepared graph with the schedule, fused pairs, packed tables and
    optional scratch the options allow (module docstring).  FitError / PatchError where
    ``patch`` or ``sram_limit`` cannot be met."""
    options = options or PlanOptions()
    deltas: dict = {}      # the overlap analysis, the same for every replan (planner.plan_graph)
    plan = plan_schedule(graph, options, deltas)
    fusions = []
    if options.fuse:       # after the patch stage, where it lowers the arena
        fusions, plan = fusion.choose(
            graph, lambda fs: planner.plan_graph(graph, options.planner, overlap=options.overlap,
                                                 patch=plan.patch, fusions=fs, deltas=deltas),
            plan, plan.patch.split if plan.patch is not None else -1)

    # the grants, each kept where the arena does not grow: planner.Replanner replays the
    # plan's sweeps for the node's resized buffers instead of planning again
    arena = planner.Replanner(graph, options.planner, overlap=options.overlap, patch=plan.patch,
                              fusions=fusions, deltas=deltas)
    pair = {k for f in fusions for k in (f.expand, f.dw)}
    stage = set(range(plan.patch.split + 1)) if plan.patch is not None else set()
    if options.compact_params:
        grant_compact_params(graph, plan, arena, set(range(len(graph.nodes))) - pair - stage)
    grant_optional_scratch(graph, plan, arena)
    if options.compact_params:
        # a fused pair's tables after its kernels' optional scratch (which saves work on every
        # row), and only where one expanded copy serves every row; a patch stage's last: each
        # one is held over the whole stage
        one_copy = {k for f in fusions for k in (f.expand, f.dw)
                    if fusion.pair_channel_params(graph, f, k) is not None}
        grant_compact_params(graph, plan, arena, one_copy)
        grant_compact_params(graph, plan, arena, stage)
    if arena.replans:
        plan = arena.plan()
    if options.compact_params:
        drop_unpaying_exceptions(graph, plan)
    return plan


def plan_schedule(graph: Graph, options: PlanOptions, deltas: dict | None = None) -> MemoryPlan:
    """The memory plan, with the patch schedule ``patch`` / ``sram_limit`` ask for (deltas:
    see planner.plan_graph)."""
    deltas = {} if deltas is None else deltas

    def plan_fn(schedule):
        return planner.plan_graph(graph, options.planner, overlap=options.overlap, patch=schedule,
                                  deltas=deltas)

    if not options.patch or options.patch == "none":
        if options.sram_limit is None:
            return plan_fn(None)
        _, plan = patching.choose(graph, plan_fn, "limit", options.sram_limit)
        return plan
    if options.patch == "auto":
        _, plan = patching.choose(graph, plan_fn, "auto", options.sram_limit)
        return plan
    split, grid = patching.parse_spec(options.patch, graph)
    plan = plan_fn(patching.build(graph, split, grid))
    need = patching.estimate_sram(plan.arena_bytes)
    if options.sram_limit is not None and need > options.sram_limit:
        raise FitError(f"--patch {options.patch} needs about {need} bytes of SRAM (arena "
                       f"{plan.arena_bytes} + {patching.SRAM_ALLOWANCE} for stack and statics), "
                       f"--sram-limit is {options.sram_limit}")
    return plan


def _channel_table(graph: Graph, plan: MemoryPlan, i: int):
    """The per-channel table (chanpack.ChannelParams) node i would store packed: a patch
    stage node's where one copy serves every patch, any other node's own; None if none."""
    if plan.patch is not None and i <= plan.patch.split:
        return patching.stage_channel_params(graph, plan.patch, i)
    node = graph.nodes[i]
    return ops.get(node.op).channel_params(node)


def drop_unpaying_exceptions(graph: Graph, plan: MemoryPlan) -> None:
    """Pack every table without exception lists where all of them together save less than
    the decoder code that applies them (chanpack.EXCEPTION_CODE_BYTES, left out of a model
    whose tables list none: codegen's TE_UNPACK_EXCEPTIONS switch).  The expanded tables,
    hence the plan, stay the same."""
    plain = {}
    for i, node in enumerate(graph.nodes):
        packed = node.params.get("rq_packed")
        if packed is None or not chanpack.has_exceptions(packed):
            continue
        cp = _channel_table(graph, plan, i)
        plain[i] = chanpack.pack_if_packable(cp, exceptions=False)
        if plain[i] is None:
            return
        if plain[i].nbytes >= int(node.params["rq_table_bytes"]):
            return
    gain = sum(plain[i].nbytes - graph.nodes[i].params["rq_packed"].nbytes for i in plain)
    if plain and gain < chanpack.EXCEPTION_CODE_BYTES:
        for i, words in plain.items():
            graph.nodes[i].params["rq_packed"] = words


def grant_compact_params(graph: Graph, plan: MemoryPlan, arena: planner.Replanner,
                         among: set) -> None:
    """Store a layer's per-channel parameters bit-packed in Flash (ops/chanpack.py) wherever
    the table they expand to fits in the arena as it is (the table lives in the layer's
    scratch while it runs; for a layer of a fused pair, which runs row by row, the pair's
    scratch holds it from before the first row to the last, see fusion.scratch_of; for a
    layer of a patch stage, which runs once per patch, a buffer expanded before the first
    patch and alive over the whole stage holds it, see patching.stage_channel_params).  Only
    the ``among`` node indices are considered, in order, each granted where ``arena`` (the
    plan's replanner) does not grow."""
    for i in sorted(among):
        node = graph.nodes[i]
        if node.attrs.get(ACC_INIT_VARIES):   # its table is rewritten at run time (tinytrain)
            continue
        cp = _channel_table(graph, plan, i)
        packed = chanpack.pack_if_packable(cp) if cp is not None else None
        if packed is None:
            continue
        size = chanpack.table_bytes(cp.n, cp.group)
        if packed.nbytes >= size:
            continue
        node.params["rq_table_bytes"] = size
        if not arena.try_node(i):
            del node.params["rq_table_bytes"]
            continue
        node.params["rq_packed"] = packed


def grant_optional_scratch(graph: Graph, plan: MemoryPlan, arena: planner.Replanner) -> None:
    """Give kernels the optional scratch that speeds them up wherever the arena stays the same
    (``arena``: the plan's replanner).

    Nodes ask with ``params["optional_scratch_bytes"]`` (see tinyengine/ops/__init__.py);
    nodes of a patch stage keep their per-patch plan and are left alone.
    """
    first = plan.patch.split + 1 if plan.patch is not None else 0  # after the patch stage
    for i in range(first, len(graph.nodes)):
        node = graph.nodes[i]
        want = int(node.params.get("optional_scratch_bytes", 0))
        if not want or node.params.get("scratch_bytes"):
            continue
        node.params["scratch_bytes"] = want
        if not arena.try_node(i):
            node.params["scratch_bytes"] = 0
