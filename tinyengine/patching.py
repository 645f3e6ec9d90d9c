"""Patch-based inference (MCUNetV2): run the first stage of a network patch by patch.

The first layers of a vision network hold the largest activations.  Instead of computing
each of them whole, the stage from the model input up to a *split* node runs once per
patch of a grid over the split node's output: each patch computes the part of every stage
tensor its output region needs (its receptive field, with the halo the windows need),
then writes its region into the split node's whole output tensor.  Only the model input
and the split output are ever whole; every other stage tensor lives in a patch buffer.

Any kernel size, stride, dilation and padding works, because each patch's node is the
model's node re-derived for a region (:func:`build`):

* the region of an op's input is the rows / columns its output region reads, clipped to
  the image: ``[max(0, y0*s - pad_top), min(in_h, (y1-1)*s - pad_top + eff_h))``;
* the patch's padding is explicit: ``pad_top`` only where the region touches the image's
  top border (likewise left), bottom / right only where the region ends at the image's
  bottom / right border: the kernels read ``pad_value`` past ``in_h`` / ``in_w`` of the
  region, which then is the real border (average pools count only in-bounds pixels, the
  same);
* prepare() of the op on the patch-sized tensors computes the kernel parameters, so the
  patch runs the very kernel the whole tensor would, on a sub-problem; the NumPy reference
  of the same patch nodes (:func:`run_reference`) is bit-exact with the whole-tensor run.

Patches are NxM: rows are full-width strips when M = 1 (contiguous in NHWC: the input is
read in place and the result written in place); with M > 1 a patch's input region is
copied into a patch buffer (te_copy_2d_s8) and its result copied into the split tensor.

A stage layer's per-channel table stored bit-packed (compiler.grant_compact_params, where
the arena does not grow) is expanded once, before the first patch, into a buffer alive over
the whole stage (``table:NODE``), which every patch's call reads (:func:`stage_channel_params`).

A stage is valid when it is a prefix of the node list made of window ops (CONV_2D,
DEPTHWISE_CONV_2D, AVERAGE_POOL_2D, MAX_POOL_2D) and same-shape elementwise ops, whose
tensors other than the split output are read only inside the stage, and where every
tensor is read over the same region by all its readers.

:func:`choose` searches split points and grids: ``auto`` takes the smallest peak SRAM with
at most 10% extra MACs; a SRAM limit takes the fewest MACs that fit.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from . import ops
from .errors import FitError, TinyEngineError
from .ir import Graph, Node, Tensor

WINDOW_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D")
ELEMENTWISE_OPS = ("ADD", "MUL", "LOGISTIC", "QUANTIZE")
MAX_MAC_OVERHEAD = 0.10       # --patch auto: at most 10% more MACs than the whole-tensor run
SRAM_ALLOWANCE = 1024         # bytes beside the arena (firmware statics + stack) in SRAM estimates
GRIDS = [(n, n) for n in range(2, 9)] + [(n, 1) for n in range(2, 11)]


class PatchError(TinyEngineError):
    """A patch schedule that cannot be built for this model."""


@dataclass(frozen=True)
class Region:
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def h(self) -> int:
        return self.y1 - self.y0

    @property
    def w(self) -> int:
        return self.x1 - self.x0


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
    code_form: str = ""     # "loop" or "unrolled", set by render_stage

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
def _window(node) -> tuple:
    """(k_h, k_w, stride_h, stride_w, dil_h, dil_w, pad_top, pad_left) of a prepared node."""
    p = node.params
    if node.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        return (p["k_h"], p["k_w"], p["stride_h"], p["stride_w"], p["dil_h"], p["dil_w"],
                p["pad_top"], p["pad_left"])
    return (p["filter_h"], p["filter_w"], p["stride_h"], p["stride_w"], 1, 1,
            p["pad_top"], p["pad_left"])


def _input_region(node, graph, r: Region) -> Region:
    if node.op not in WINDOW_OPS:
        return r
    kh, kw, sh, sw, dh, dw, pt, pl = _window(node)
    _, in_h, in_w, _ = graph.tensors[node.inputs[0]].shape
    return Region(max(0, r.y0 * sh - pt), min(in_h, (r.y1 - 1) * sh - pt + (kh - 1) * dh + 1),
                  max(0, r.x0 * sw - pl), min(in_w, (r.x1 - 1) * sw - pl + (kw - 1) * dw + 1))


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


def region_graph(graph: Graph, nodes: list, regions: dict, inputs: list, outputs: list) -> Graph:
    """``nodes`` re-derived on the region-sized tensors of ``regions`` (tensor -> Region):
    window ops get the explicit padding of their region (module docstring) and every node
    is prepared on its sub-problem (cached in ``graph.meta``).  Also used by
    tinyengine/fusion.py for the row bands of a fused expand -> depthwise pair."""
    tensors = {}
    for name, r in regions.items():
        t = graph.tensors[name]
        tensors[name] = Tensor(name, (1, r.h, r.w, t.shape[3]), t.dtype, t.quant)
    new_nodes = []
    for node in nodes:
        for t in node.inputs:
            if t is not None and graph.tensors[t].is_const:
                tensors[t] = graph.tensors[t]
        attrs = dict(node.attrs)
        if node.op in WINDOW_OPS:
            kh, kw, sh, sw, dh, dw, pt, pl = _window(node)
            r_out, r_in = regions[node.outputs[0]], regions[node.inputs[0]]
            top = r_in.y0 - (r_out.y0 * sh - pt)
            left = r_in.x0 - (r_out.x0 * sw - pl)
            bottom = max(0, (r_out.h - 1) * sh + (kh - 1) * dh + 1 - r_in.h - top)
            right = max(0, (r_out.w - 1) * sw + (kw - 1) * dw + 1 - r_in.w - left)
            attrs["padding"] = (top, bottom, left, right)
        new_nodes.append(Node(node.op, node.name, list(node.inputs), list(node.outputs), attrs))
    g = Graph(tensors, new_nodes, list(inputs), list(outputs), name=graph.name, meta=graph.meta)
    cache = graph.meta.setdefault("patch_prepare_cache", {})
    for n, orig in zip(new_nodes, nodes):
        key = (orig.name, tuple(tuple(g.tensors[t].shape) for t in n.inputs + n.outputs
                               if t is not None and not g.tensors[t].is_const),
               repr(n.attrs.get("padding")))
        if key not in cache:
            opdef = ops.get(n.op)
            try:
                opdef.check(n, g)
                cache[key] = opdef.prepare(n, g)
            except ops.UnsupportedError as e:
                raise PatchError(f"a patch of node '{n.name}' cannot run: {e}") from None
        n.params = cache[key]
    return g


def param_symbols(node: Node, orig: Node, k: int, consts: dict) -> dict:
    """A region node's params for its template: arrays become constants named after the
    whole node's (``te_n{k}_{key}``), with a digest suffix where the region's array differs."""
    import numpy as np

    from .codegen import ConstArray, _ctype_of, c_comment

    params = {}
    for key, value in node.params.items():
        if isinstance(value, np.ndarray):
            whole = orig.params.get(key)
            sym = f"te_n{k}_{key}"
            if not (isinstance(whole, np.ndarray) and whole.shape == value.shape
                    and np.array_equal(whole, value)):
                digest = hashlib.sha1(value.tobytes()).hexdigest()[:8]
                sym = f"te_n{k}_{key}_{digest}"
            if sym not in consts:
                consts[sym] = ConstArray(sym, _ctype_of(value), np.ascontiguousarray(value),
                                         c_comment(f"{node.name}: {key}"))
            params[key] = sym
        else:
            params[key] = value
    return params


# C types for tables of literals, narrowest first: (type, lowest, highest value)
_TABLE_TYPES = [("uint8_t", 0, 255), ("int8_t", -128, 127), ("uint16_t", 0, 65535),
                ("int16_t", -32768, 32767), ("int32_t", -2 ** 31, 2 ** 31 - 1),
                ("int64_t", -2 ** 63, 2 ** 63 - 1)]


def table_ctype(values) -> str | None:
    """The narrowest C integer type of _TABLE_TYPES that holds every value (None if none
    does).  Up to int32_t each promotes to int, and int64_t is a wider literal's own type,
    so a table entry has the type of the literal it replaces."""
    lo, hi = min(values, default=0), max(values, default=0)
    return next((t for t, a, b in _TABLE_TYPES if a <= lo and hi <= b), None)


def literal_loop(bodies: list):
    """When the C texts ``bodies`` differ only in integer literals: (one body with each
    differing literal replaced by a table entry ``a[c]``, the tables); None otherwise.

    A table holds one row per body and one column per distinct list of values: literals
    with equal values in every body share a column.  Each column goes to the table of the
    narrowest type that holds it (table_ctype); one table is ``te_patch_args`` read
    through ``a``, several are ``te_patch_args_u8`` through ``a_u8``, ``..._s16`` through
    ``a_s16`` and so on.  Each table: dict(ctype, name, ptr, k = columns, rows)."""
    split = [_LITERAL.split(b) for b in bodies]
    if len({tuple(parts[0::2]) for parts in split}) != 1:
        return None
    values = [[int(v) for v in parts[1::2]] for parts in split]
    columns = {}  # literal index -> its values in every body (the literals that differ)
    groups = {}   # C type -> the distinct value lists of that type, in order of first use
    for i in range(len(values[0])):
        vals = tuple(v[i] for v in values)
        if len(set(vals)) > 1:
            ctype = table_ctype(vals)
            if ctype is None:
                return None
            columns[i] = vals
            if vals not in groups.setdefault(ctype, []):
                groups[ctype].append(vals)
    ref, tables = {}, []
    for ctype in (t for t, _, _ in _TABLE_TYPES if t in groups):
        tag = ctype.replace("uint", "u").replace("int", "s")[:-2]   # uint8_t -> u8
        name, ptr = (("te_patch_args", "a") if len(groups) == 1 else
                     (f"te_patch_args_{tag}", f"a_{tag}"))
        for c, vals in enumerate(groups[ctype]):
            ref[vals] = f"{ptr}[{c}]"
        tables.append(dict(ctype=ctype, name=name, ptr=ptr, k=len(groups[ctype]),
                           rows=[list(r) for r in zip(*groups[ctype])]))
    body = [ref[columns[i // 2]] if i % 2 and i // 2 in columns else piece
            for i, piece in enumerate(split[0])]
    return "".join(body), tables


def build(graph: Graph, split: int, grid: tuple) -> PatchSchedule:
    """The schedule running nodes[0..split] on a rows x cols grid; PatchError if it cannot."""
    why = stage_problem(graph, split)
    if why:
        raise PatchError(f"cannot run the first {split + 1} ops patch by patch: {why}")
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
                    need = _input_region(node, graph, r_out)
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
    scratch = {}
    overlaps = {}
    from . import overlap as ov
    for k, node in enumerate(stage):
        s = max(ops.get(node.op).scratch_bytes(p.graph.nodes[k], p.graph) for p in patches)
        if s:
            scratch[node.name] = s
        for idx, t in enumerate(node.inputs):
            if t is None or graph.tensors[t].is_const or t == graph.inputs[0] or node.outputs[0] == out:
                continue
            ds = [ov.max_delta(p.graph.nodes[k], p.graph, idx) for p in patches]
            overlaps[(k, idx)] = None if any(d is None for d in ds) else min(ds)
    macs_whole = sum(ops.get(n.op).macs(n, graph) for n in graph.nodes)
    macs_stage = sum(ops.get(n.op).macs(n, graph) for n in stage)
    macs_p = sum(ops.get(n.op).macs(n, p.graph) for p in patches for n in p.graph.nodes)
    return PatchSchedule(split, (rows, cols), graph.inputs[0], out, patches, sizes, scratch,
                         overlaps, macs_whole, macs_whole - macs_stage + macs_p,
                         [n.name for n in stage])


def stage_channel_params(graph: Graph, schedule: PatchSchedule, k: int):
    """The per-channel table (chanpack.ChannelParams) of stage node k where every patch's
    call reads the whole node's table (same kernel parameters, same layout), so that one
    copy expanded before the patch loop serves every patch; else None (the table stays in
    Flash).  compiler.grant_compact_params packs such a table where the arena does not grow;
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
def candidates(graph: Graph) -> list:
    """Every valid schedule over split points and GRIDS (no ordering)."""
    out = []
    for split in range(len(graph.nodes)):
        if stage_problem(graph, split):
            if split > 0 and stage_problem(graph, split - 1) is None:
                # stages are prefixes: once one breaks, longer ones only stay broken when the
                # break is a tensor read later -- keep looking, it is cheap
                pass
            continue
        for grid in GRIDS:
            try:
                out.append(build(graph, split, grid))
            except PatchError:
                continue
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
    for s in candidates(graph):
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


# -- code generation -------------------------------------------------------------------------
_LITERAL = re.compile(r"(?<![\w.])(\d+)(?![\w.])")


def render_stage(env, graph: Graph, plan, consts: dict, const_of_tensor: dict,
                 kernel_files: list, profile: bool = False) -> dict:
    """The C of the whole patch stage, as one entry of codegen's call list.

    Each patch's calls are rendered with the ops' own templates and the patch nodes' own
    parameters.  When the patches differ only in integer literals (region sizes, pads,
    arena offsets) -- the usual case -- the stage becomes one loop over a table of the
    literals that differ (codegen_templates/patch_stage.c.j2); otherwise the patches are
    written one after the other (the report says which).

    profile: every patch calls ``te_profile_mark(k)`` after its node k (after the copy-out
    for the split node), so the firmware prints one count per layer per patch, which
    runner.parse_layer_counts sums per layer (tinyengine/profile.py).
    """
    import numpy as np

    from .codegen import ConstArray, c_comment
    from .ops import chanpack

    s: PatchSchedule = plan.patch
    arena = "te_arena"

    def at(off) -> str:
        return f"((int8_t *)({arena} + {off}))"

    # bit-packed per-channel tables (compiler.grant_compact_params): expanded once, before
    # the patch loop, into the node's table buffer, which lives over the whole stage
    unpack, expanded = [], {}
    for k, node in enumerate(graph.nodes[:s.split + 1]):
        if "rq_packed" not in node.params:
            continue
        cp = stage_channel_params(graph, s, k)
        sym = f"te_n{k}_rq_packed"
        consts[sym] = ConstArray(sym, "uint32_t", np.ascontiguousarray(node.params["rq_packed"]),
                                 c_comment(f"{node.name}: rq_packed"))
        expanded[k] = (cp, at(plan.extra[f"table:{node.name}"]))
        unpack.append(env.get_template("unpack_channels.c.j2").render(
            packed=sym, n=cp.n, group=cp.group, table=expanded[k][1]).rstrip())
        if "te_unpack_channels.c" not in kernel_files:
            kernel_files.append("te_unpack_channels.c")

    x = graph.tensors[s.input]
    y = graph.tensors[s.output]
    xrow, yrow = x.shape[2] * x.shape[3], y.shape[2] * y.shape[3]
    bodies = []
    for p in s.patches:
        texts = []
        r_in = p.regions[s.input]
        if s.copy_in:
            src = plan.offsets[s.input] + (r_in.y0 * x.shape[2] + r_in.x0) * x.shape[3]
            in_expr = at(plan.extra["patch_in"])
            texts.append(env.get_template("ops/copy_2d.c.j2").render(
                src=at(src), src_stride=xrow, dst=in_expr, dst_stride=r_in.w * x.shape[3],
                rows=r_in.h, row_bytes=r_in.w * x.shape[3]).rstrip())
        else:
            in_expr = at(plan.offsets[s.input] + r_in.y0 * xrow)
        r = p.region
        out_expr = (at(plan.extra["patch_out"]) if s.copy_out
                    else at(plan.offsets[s.output] + r.y0 * yrow))
        for k, node in enumerate(p.graph.nodes):
            orig = graph.nodes[k]
            opdef = ops.get(node.op)
            params = param_symbols(node, orig, k, consts)
            if k in expanded:   # the kernel reads the table expanded before the loop
                cp, table = expanded[k]
                chanpack.bind(params, cp.names, cp.n, table)

            def ptr(t):
                if t is None:
                    return None
                if graph.tensors[t].is_const:
                    return const_of_tensor[t]
                if t == s.input:
                    return in_expr
                if t == s.output:
                    return out_expr
                return f"(({graph.tensors[t].c_type} *)({arena} + {plan.offsets[t]}))"

            scratch = "NULL"
            if node.name in plan.scratch:
                scratch = at(plan.scratch[node.name][0])
            texts.append(env.get_template(opdef.template_for(node)).render(
                node=node, p=params, inp=[ptr(t) for t in node.inputs],
                out=[ptr(t) for t in node.outputs], scratch=scratch, same_buffer=False,
                tin=[p.graph.tensors[t] if t is not None else None for t in node.inputs],
                tout=[p.graph.tensors[t] for t in node.outputs]).rstrip())
            if k in expanded and expanded[k][1] not in texts[-1]:
                raise AssertionError(f"{opdef.template_for(node)} ignores the expanded channel table")
            for kf in opdef.kernel_sources(node):
                if kf not in kernel_files:
                    kernel_files.append(kf)
            if profile and k < s.split:
                texts.append(f"te_profile_mark({k}u);")
        if s.copy_out:
            dst = plan.offsets[s.output] + (r.y0 * y.shape[2] + r.x0) * y.shape[3]
            texts.append(env.get_template("ops/copy_2d.c.j2").render(
                src=out_expr, src_stride=r.w * y.shape[3], dst=at(dst), dst_stride=yrow,
                rows=r.h, row_bytes=r.w * y.shape[3]).rstrip())
        if profile:
            texts.append(f"te_profile_mark({s.split}u);")
        bodies.append("\n".join(texts))
    if s.copy_in or s.copy_out:
        for kf in ("te_copy_2d_s8.c", "te_move_s8.c"):
            if kf not in kernel_files:
                kernel_files.append(kf)

    ctx = dict(rows=s.grid[0], cols=s.grid[1], split_tensor=c_comment(s.output), n=len(bodies))
    looped = literal_loop(bodies)
    if looped is not None:
        body, tables = looped
        text = env.get_template("patch_stage.c.j2").render(loop=True, body=body,
                                                           tables=tables, unpack=unpack, **ctx)
        s.code_form = "loop"
    else:
        text = env.get_template("patch_stage.c.j2").render(loop=False, bodies=bodies,
                                                           unpack=unpack, **ctx)
        s.code_form = "unrolled"
    last = graph.nodes[s.split]
    return {"index": s.split, "node": last, "body": text.rstrip(),
            "inputs": [c_comment(s.input)], "outputs": [c_comment(s.output)]}
