"""Patch-based inference (MCUNetV2): run the first stage of a network patch by patch.

The first layers of a vision network hold the largest activations.  Instead of computing
each of them whole, the stage from the model input up to a *split* node runs once per
patch of a grid over the split node's output: each patch computes the part of every stage
tensor its output region needs (its receptive field, with the halo the windows need),
then writes its region into the split node's whole output tensor.  Only the model input
and the split output are ever whole; every other stage tensor lives in a patch buffer.

Any kernel size, stride, dilation and padding works, because each patch's node is the
model's node re-derived for a region (tinyengine/regions.py: the region a window op reads,
the explicit padding of a region at the image's border, prepare() on the patch-sized
tensors), so the patch runs the very kernel the whole tensor would, on a sub-problem; the
NumPy reference of the same patch nodes (:func:`run_reference`) is bit-exact with the
whole-tensor run.

Patches are NxM: rows are full-width strips when M = 1 (contiguous in NHWC: the input is
read in place and the result written in place); with M > 1 a patch's input region is
copied into a patch buffer (te_copy_2d_s8) and its result copied into the split tensor.

A stage layer's per-channel table stored bit-packed (memory.grant_compact_params, where
the arena does not grow) is expanded once, before the first patch, into a buffer alive over
the whole stage (``table:NODE``), which every patch's call reads (:func:`stage_channel_params`).

A stage is valid when it is a prefix of the node list made of window ops (CONV_2D,
DEPTHWISE_CONV_2D, AVERAGE_POOL_2D, MAX_POOL_2D) and same-shape elementwise ops, whose
tensors other than the split output are read only inside the stage, and where every
tensor is read over the same region by all its readers.

:func:`choose` searches split points and grids: ``auto`` takes the smallest peak SRAM with
at most 10% extra MACs; a SRAM limit takes the fewest MACs that fit.

Schedule layer: this module decides and describes; the stage's C comes from
tinyengine/codegen/patch_stage.py.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import ops
from .errors import FitError, PatchError
from .ir import Graph
from .regions import WINDOW_OPS, Region, input_region, region_graph

ELEMENTWISE_OPS = ("ADD", "MUL", "LOGISTIC", "QUANTIZE")
MAX_MAC_OVERHEAD = 0.10       # --patch auto: at most 10% more MACs than the whole-tensor run
SRAM_ALLOWANCE = 1024         # bytes beside the arena (firmware statics + stack) in SRAM estimates
GRIDS = [(n, n) for n in range(2, 9)] + [(n, 1) for n in range(2, 11)]


@dataclass
class Patch:
    region: Region          # of the split tensor
    regions: dict           # stage tensor -> Region
    graph: Graph            # the patch's nodes on region-sized tensors (params prepared)


@dataclass
class PatchSchedule:
    split: int              # index of the split node (the stage is nodes[0 .. split])
    grid: tuple             # (rows, cols)
    input: str              # the model input (whole)
    output: str             # the split tensor (whole)
    patches: list
    sizes: dict             # stage tensor -> patch buffer bytes (largest patch)
    scratch: dict           # stage node name -> scratch bytes (largest patch)
    overlaps: dict          # (node index, input index) -> max start delta over patches (or None)
    macs_whole: int         # MACs of the model without patches
    macs: int               # MACs with patches (halos computed twice)
    stage_names: list = field(default_factory=list)
    code_form: str = ""     # "loop" or "unrolled", set by codegen.patch_stage.render_stage

    @property
    def copy_in(self) -> bool:
        return self.grid[1] > 1

    @property
    def copy_out(self) -> bool:
        return self.grid[1] > 1

    @property
    def overhead(self) -> float:
        return (self.macs - self.macs_whole) / max(self.macs_whole, 1)

    def spec(self) -> str:
        return f"{self.grid[0]}x{self.grid[1]}@{self.split}"

    def describe(self, graph: Graph) -> dict:
        return {
            "spec": self.spec(),
            "split_node": graph.nodes[self.split].name,
            "split_index": self.split,
            "split_tensor": self.output,
            "grid": list(self.grid),
            "stage_nodes": self.stage_names,
            "macs_whole_model": self.macs_whole,
            "macs_with_patches": self.macs,
            "mac_overhead": round(self.overhead, 4),
            "copy_in_out": self.copy_in,
            "code_form": self.code_form,
            "patch_buffers": dict(self.sizes),
            "patches": [{"split_region": [p.region.y0, p.region.y1, p.region.x0, p.region.x1],
                         "input_region": list(_rt(p.regions[self.input]))} for p in self.patches],
        }


def _rt(r: Region) -> tuple:
    return (r.y0, r.y1, r.x0, r.x1)


# -- geometry --------------------------------------------------------------------------------
def _edges(n: int, parts: int) -> list:
    return [round(i * n / parts) for i in range(parts + 1)]


def stage_problem(graph: Graph, split: int):
    """Why nodes[0..split] cannot run patch by patch (a string), or None when they can."""
    if not 0 <= split < len(graph.nodes):
        return f"layer {split} does not exist (the model has {len(graph.nodes)} ops)"
    if len(graph.inputs) != 1:
        return "the model has more than one input"
    x = graph.tensors[graph.inputs[0]]
    if len(x.shape) != 4 or x.shape[0] != 1:
        return f"the input {x.shape} is not one NHWC image"
    stage = graph.nodes[:split + 1]
    inside = {id(n) for n in stage}
    for n in stage:
        if n.op not in WINDOW_OPS + ELEMENTWISE_OPS or len(n.outputs) != 1:
            return f"node '{n.name}' ({n.op}) cannot run on patches (supported: " \
                   f"{', '.join(WINDOW_OPS + ELEMENTWISE_OPS)})"
        y = graph.tensors[n.outputs[0]]
        if len(y.shape) != 4:
            return f"node '{n.name}' output {y.shape} is not NHWC"
        if n.op in ELEMENTWISE_OPS:
            if n.op in ("ADD", "MUL") and not n.params.get("same"):
                return f"node '{n.name}' ({n.op}) broadcasts"
            for t in n.inputs:
                if t is not None and not graph.tensors[t].is_const and graph.tensors[t].shape != y.shape:
                    return f"node '{n.name}' ({n.op}) changes the shape"
            if n.op == "QUANTIZE" and n.params.get("kernel") != "te_requantize_s8":
                return f"node '{n.name}' (QUANTIZE) is not int8 -> int8"
    consumers = graph.consumers()
    split_out = stage[-1].outputs[0]
    for n in stage:
        t = n.outputs[0]
        if t == split_out:
            continue
        if t in graph.outputs or any(id(c) not in inside for c in consumers.get(t, [])):
            return f"tensor '{t}' of node '{n.name}' is read after the stage"
    if any(id(c) not in inside for c in consumers.get(graph.inputs[0], [])):
        return "the model input is read after the stage"
    if split_out in graph.outputs:
        return "the split tensor is a model output"
    return None


def _patch_graph(graph: Graph, split: int, regions: dict, out_region: Region):
    """The stage's nodes re-derived on region-sized tensors; None when regions disagree."""
    return region_graph(graph, graph.nodes[:split + 1], regions, [graph.inputs[0]],
                        [graph.nodes[split].outputs[0]])


def build(graph: Graph, split: int, grid: tuple) -> PatchSchedule:
    """The schedule running nodes[0..split] on a rows x cols grid; PatchError if it cannot."""
    why = stage_problem(graph, split)
    if why:
        raise PatchError(f"cannot run the first {split + 1} ops patch by patch: {why}")
    return _build(graph, split, grid, graph_macs(graph))


def _build(graph: Graph, split: int, grid: tuple, macs_whole: int,
           max_overhead: float | None = None) -> PatchSchedule | None:
    """build() of a split that stage_problem accepts, the model's MACs given; None where the
    patches' extra MACs exceed ``max_overhead`` (checked before the overlap analysis)."""
    rows, cols = grid
    split_node = graph.nodes[split]
    out = split_node.outputs[0]
    _, oh, ow, _ = graph.tensors[out].shape
    if rows < 1 or cols < 1 or rows > oh or cols > ow or rows * cols < 2:
        raise PatchError(f"grid {rows}x{cols} does not fit the split tensor '{out}' "
                         f"({oh}x{ow}; at least 2 patches, at most one pixel each)")
    stage = graph.nodes[:split + 1]
    ye, xe = _edges(oh, rows), _edges(ow, cols)
    patches = []
    for i in range(rows):
        for j in range(cols):
            r = Region(ye[i], ye[i + 1], xe[j], xe[j + 1])
            regions = {out: r}
            for node in reversed(stage):
                r_out = regions.get(node.outputs[0])
                if r_out is None:
                    raise PatchError(f"node '{node.name}' does not lead to the split tensor")
                for t in node.inputs:
                    if t is None or graph.tensors[t].is_const:
                        continue
                    need = input_region(node, graph, r_out)
                    if t in regions and regions[t] != need:
                        raise PatchError(f"cannot run the first {split + 1} ops patch by patch: "
                                         f"tensor '{t}' is read over different regions")
                    regions[t] = need
            if cols == 1:
                # full-width strips read the model input in place (render_stage): whole rows,
                # also where the windows never reach the last columns (VALID, stride > 1)
                r_in = regions[graph.inputs[0]]
                regions[graph.inputs[0]] = Region(r_in.y0, r_in.y1, 0,
                                                  graph.tensors[graph.inputs[0]].shape[2])
            patches.append(Patch(r, regions, _patch_graph(graph, split, regions, r)))
    whole = {t for n in stage for t in n.outputs} - {out}
    sizes = {t: max(p.graph.tensors[t].nbytes for p in patches) for t in sorted(whole)}
    # a patch's node is its shapes and padding (regions.region_graph): one of each kind per node
    kinds = [{} for _ in stage]
    macs_p = 0
    for k, node in enumerate(stage):
        for p in patches:
            n = p.graph.nodes[k]
            kind = (tuple(tuple(p.graph.tensors[t].shape) for t in n.inputs + n.outputs
                          if t is not None and not p.graph.tensors[t].is_const),
                    repr(n.attrs.get("padding")))
            if kind not in kinds[k]:
                kinds[k][kind] = (n, p.graph, ops.get(node.op).macs(n, p.graph))
            macs_p += kinds[k][kind][2]
    macs = macs_whole - sum(ops.get(n.op).macs(n, graph) for n in stage) + macs_p
    if max_overhead is not None and (macs - macs_whole) / max(macs_whole, 1) > max_overhead:
        return None
    scratch = {}
    overlaps = {}
    from . import overlap as ov
    for k, node in enumerate(stage):
        s = max(ops.get(node.op).scratch_bytes(n, g) for n, g, _ in kinds[k].values())
        if s:
            scratch[node.name] = s
        for idx, t in enumerate(node.inputs):
            if t is None or graph.tensors[t].is_const or t == graph.inputs[0] or node.outputs[0] == out:
                continue
            ds = [ov.max_delta(n, g, idx) for n, g, _ in kinds[k].values()]
            overlaps[(k, idx)] = None if any(d is None for d in ds) else min(ds)
    return PatchSchedule(split, (rows, cols), graph.inputs[0], out, patches, sizes, scratch,
                         overlaps, macs_whole, macs, [n.name for n in stage])


def stage_channel_params(graph: Graph, schedule: PatchSchedule, k: int):
    """The per-channel table (chanpack.ChannelParams) of stage node k where every patch's
    call reads the whole node's table (same kernel parameters, same layout), so that one
    copy expanded before the patch loop serves every patch; else None (the table stays in
    Flash).  memory.grant_compact_params packs such a table where the arena does not grow;
    the planner keeps the expanded copy alive over the whole stage (``table:NODE`` in
    MemoryPlan.extra)."""
    return ops.whole_table_in_every_call(graph.nodes[k],
                                         [p.graph.nodes[k] for p in schedule.patches])


def parse_spec(spec: str, graph: Graph) -> tuple:
    """'RxC@LAYER' (LAYER: node index or name; 'N@LAYER' means NxN) -> (split, (R, C))."""
    m = re.fullmatch(r"\s*(\d+)(?:x(\d+))?@(.+?)\s*", spec or "")
    if not m:
        raise PatchError(f"--patch {spec!r}: expected auto or RxC@LAYER (e.g. 3x3@7; LAYER is a "
                         "node index or name)")
    rows = int(m.group(1))
    cols = int(m.group(2)) if m.group(2) else rows
    layer = m.group(3)
    if layer.isdigit():
        split = int(layer)
    else:
        names = [n.name for n in graph.nodes]
        if layer not in names:
            raise PatchError(f"--patch {spec!r}: no node named '{layer}'")
        split = names.index(layer)
    return split, (rows, cols)


# -- search ----------------------------------------------------------------------------------
def candidates(graph: Graph, max_overhead: float | None = None) -> list:
    """Every valid schedule over split points and GRIDS (no ordering); with ``max_overhead``
    only those with at most that fraction of extra MACs."""
    out = []
    macs = graph_macs(graph)
    for split in range(len(graph.nodes)):
        # a stage broken by a tensor read after it may be whole again further on: every split
        if stage_problem(graph, split):
            continue
        for grid in GRIDS:
            try:
                s = _build(graph, split, grid, macs, max_overhead)
            except PatchError:
                continue
            if s is not None:
                out.append(s)
    return out


def estimate_sram(arena_bytes: int) -> int:
    return arena_bytes + SRAM_ALLOWANCE


def choose(graph: Graph, plan_fn, mode: str, sram_limit: int | None):
    """Pick a schedule.  plan_fn(schedule or None) -> MemoryPlan.

    mode "auto": lowest arena among schedules within MAX_MAC_OVERHEAD (the whole-tensor run
    competes too; ties: fewer MACs).  sram_limit: fewest MACs whose estimated peak SRAM
    (arena + SRAM_ALLOWANCE) fits; FitError when none does.
    Returns (schedule or None, plan).
    """
    base = plan_fn(None)
    options = [(None, base, graph_macs(graph))]
    for s in candidates(graph, MAX_MAC_OVERHEAD if mode == "auto" else None):
        if mode == "auto" and s.overhead > MAX_MAC_OVERHEAD:
            continue
        options.append((s, plan_fn(s), s.macs))
    if sram_limit is not None:
        fits = [o for o in options if estimate_sram(o[1].arena_bytes) <= sram_limit]
        if not fits:
            best = min(options, key=lambda o: o[1].arena_bytes)
            raise FitError(f"no schedule fits --sram-limit {sram_limit}: the smallest needs "
                           f"{estimate_sram(best[1].arena_bytes)} bytes (arena "
                           f"{best[1].arena_bytes} + {SRAM_ALLOWANCE} for stack and statics"
                           f"{', patches ' + best[0].spec() if best[0] else ''}), "
                           f"{estimate_sram(best[1].arena_bytes) - sram_limit} over the limit")
        s, plan, _ = min(fits, key=lambda o: (o[2], len(o[0].patches) if o[0] else 0))
        return s, plan
    s, plan, _ = min(options, key=lambda o: (o[1].arena_bytes, o[2]))
    return s, plan


def graph_macs(graph: Graph) -> int:
    return sum(ops.get(n.op).macs(n, graph) for n in graph.nodes)


# -- NumPy execution of a schedule -----------------------------------------------------------
def run_reference(schedule: PatchSchedule, graph: Graph, inputs: list) -> list:
    """Execute the model with the stage patch by patch (NumPy references of the patch nodes)."""
    import numpy as np

    x = np.asarray(inputs[0]).reshape(graph.tensors[graph.inputs[0]].shape)
    split_t = graph.tensors[schedule.output]
    y = np.zeros(split_t.shape, dtype=split_t.np_dtype)
    for p in schedule.patches:
        r_in = p.regions[schedule.input]
        vals = {schedule.input: x[:, r_in.y0:r_in.y1, r_in.x0:r_in.x1, :]}
        for name, t in p.graph.tensors.items():
            if t.is_const:
                vals[name] = t.data
        for node in p.graph.nodes:
            args = [vals[t] if t is not None else None for t in node.inputs]
            vals[node.outputs[0]] = ops.get(node.op).reference(node, p.graph, args)[0]
        r = p.region
        y[:, r.y0:r.y1, r.x0:r.x1, :] = vals[schedule.output]
    values = {schedule.output: y}
    for name, t in graph.tensors.items():
        if t.is_const:
            values[name] = t.data
    for node in graph.nodes[schedule.split + 1:]:
        args = [values[t] if t is not None else None for t in node.inputs]
        for name, v in zip(node.outputs, ops.get(node.op).reference(node, graph, args)):
            values[name] = np.asarray(v).reshape(graph.tensors[name].shape)
    return [values[t] for t in graph.outputs]
