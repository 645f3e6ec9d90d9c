"""The compiler, top-down: load -> passes -> memory plan -> codegen -> project.

    graph = load_model(path)                 # frontend: file -> validated IR
    graph = run_passes(graph)                # PASSES, in order, IR validated after each
    plan = planner.plan_graph(graph)         # one static arena
    gen = codegen.generate(graph, plan, ..)  # C from jinja2 templates
    project.emit_project(out_dir, ...)       # self-contained C project for the board
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from . import codegen, hostio, ops, passes, planner
from .boards import Board, get_board
from .errors import FitError, ModelError, TinyEngineError
from .ir import Graph
from .version import __version__

PASSES = [
    passes.check_ops,
    passes.remove_dead_nodes,
    passes.fold_pad,          # PAD read only by a conv / depthwise conv -> its explicit padding
    passes.prepare,
    hostio.host_io,           # float QUANTIZE/DEQUANTIZE at the model's edges run on the host
    hostio.edge_layout,       # NCHW <-> NHWC at an ONNX model's edges run on the host
    passes.reorder_for_memory,  # on branching graphs, the order with the lowest live peak
]
# passes a CompileOptions flag can leave out (to measure what each technique gives)
OPTIONAL_PASSES = {"fold_pad": passes.fold_pad, "reorder": passes.reorder_for_memory}


@dataclass
class CompileOptions:
    board: str = "stm32f746"
    planner: str = "greedy"
    device_float_io: bool = False   # keep float edge QUANTIZE/DEQUANTIZE in the firmware
    profile: bool = False           # te_invoke() marks the end of every layer (tinyengine profile)
    # memory techniques (all on by default; switch one off to measure what it gives)
    fold_pad: bool = True           # fold PAD into the conv / depthwise conv reading it
    reorder: bool = True            # op order with the lowest peak on branching graphs
    overlap: bool = True            # outputs may start inside their consumed input
    fuse: bool = True               # 1x1 expand -> depthwise row-streamed where it lowers the arena
    compact_params: bool = True     # per-channel parameters bit-packed in Flash where it is free in SRAM
    patch: str | None = None        # None, "auto" or "RxC@LAYER": patch-based first stage
    sram_limit: int | None = None   # bytes of peak SRAM to fit (picks the fastest schedule)
    calibration: object = None      # float ONNX: a quantizer.Calibration (data + preprocessing)

    def describe(self) -> str:
        return (f"planner={self.planner}" + (" device_float_io" if self.device_float_io else "")
                + (" profile" if self.profile else "") + self.memory_options()
                + (" " + self.calibration.describe() if self.calibration is not None else ""))

    def memory_options(self) -> str:
        off = [k for k in ("fold_pad", "reorder", "overlap", "fuse", "compact_params")
               if not getattr(self, k)]
        return ("".join(f" no_{k}" for k in off) + (f" patch={self.patch}" if self.patch else "")
                + (f" sram_limit={self.sram_limit}" if self.sram_limit else ""))

    def passes(self) -> list:
        skip = {p for k, p in OPTIONAL_PASSES.items() if not getattr(self, k)}
        return [p for p in PASSES if not (self.device_float_io and p is hostio.host_io)
                and p not in skip]


@dataclass
class Compiled:
    graph: Graph
    plan: planner.MemoryPlan
    board: Board
    options: CompileOptions
    source: str
    sha256: str
    report: dict = field(default_factory=dict)


def load_model(path, options: CompileOptions | None = None) -> Graph:
    suffix = Path(str(path)).suffix.lower()
    if suffix == ".tflite":
        from .frontends import tflite
        return tflite.load(path)
    if suffix == ".onnx":
        from .frontends import onnx
        return onnx.load(path, calibration=options.calibration if options else None)
    raise ModelError(f"{path}: unknown model format '{suffix or '(none)'}' (supported: .tflite, .onnx)")


def run_passes(graph: Graph, options: CompileOptions | None = None) -> Graph:
    for p in (options or CompileOptions()).passes():
        graph = p(graph)
        graph.validate()
    return graph


def compile_model(path, options: CompileOptions) -> Compiled:
    board = get_board(options.board)
    data = Path(path).read_bytes() if Path(str(path)).exists() else b""
    graph = load_model(path, options)
    graph.meta["target"] = ops.Target(board.name, board.cpu, board.has_dsp)
    graph = run_passes(graph, options)
    plan = _plan(graph, options)
    c = Compiled(graph, plan, board, options, str(path), hashlib.sha256(data).hexdigest())
    return c


def _plan(graph: Graph, options: CompileOptions) -> planner.MemoryPlan:
    """The memory plan, with the patch schedule and the optional scratch that costs nothing."""
    from . import fusion

    plan = _plan_schedule(graph, options)
    fusions = []
    if options.fuse:       # after the patch stage, where it lowers the arena
        fusions, plan = fusion.choose(
            graph, lambda fs: planner.plan_graph(graph, options.planner, overlap=options.overlap,
                                                 patch=plan.patch, fusions=fs),
            plan, plan.patch.split if plan.patch is not None else -1)
    def replan():
        return planner.plan_graph(graph, options.planner, overlap=options.overlap,
                                  patch=plan.patch, fusions=fusions)

    pair = {k for f in fusions for k in (f.expand, f.dw)}
    stage = set(range(plan.patch.split + 1)) if plan.patch is not None else set()
    if options.compact_params:
        plan = grant_compact_params(graph, plan, replan,
                                    set(range(len(graph.nodes))) - pair - stage)
    plan = grant_optional_scratch(graph, plan, replan)
    if options.compact_params:
        # a fused pair's tables after its kernels' optional scratch (which saves work on every
        # row), and only where one expanded copy serves every row; a patch stage's last: each
        # one is held over the whole stage
        one_copy = {k for f in fusions for k in (f.expand, f.dw)
                    if fusion.pair_channel_params(graph, f, k) is not None}
        plan = grant_compact_params(graph, plan, replan, one_copy)
        plan = grant_compact_params(graph, plan, replan, stage)
        drop_unpaying_exceptions(graph, plan)
    return plan


def _channel_table(graph: Graph, plan: planner.MemoryPlan, i: int):
    """The per-channel table (chanpack.ChannelParams) node i would store packed: a patch
    stage node's where one copy serves every patch, any other node's own; None if none."""
    from . import patching

    if plan.patch is not None and i <= plan.patch.split:
        return patching.stage_channel_params(graph, plan.patch, i)
    node = graph.nodes[i]
    return ops.get(node.op).channel_params(node)


def drop_unpaying_exceptions(graph: Graph, plan: planner.MemoryPlan) -> None:
    """Pack every table without exception lists where all of them together save less than
    the decoder code that applies them (chanpack.EXCEPTION_CODE_BYTES, left out of a model
    whose tables list none: codegen's TE_UNPACK_EXCEPTIONS switch).  The expanded tables,
    hence the plan, stay the same."""
    from .ops import chanpack

    plain = {}
    for i, node in enumerate(graph.nodes):
        packed = node.params.get("rq_packed")
        if packed is None or not chanpack.has_exceptions(packed):
            continue
        cp = _channel_table(graph, plan, i)
        if not chanpack.packable(cp, exceptions=False):
            return
        plain[i] = chanpack.pack(cp, exceptions=False)
        if plain[i].nbytes >= int(node.params["rq_table_bytes"]):
            return
    gain = sum(plain[i].nbytes - graph.nodes[i].params["rq_packed"].nbytes for i in plain)
    if plain and gain < chanpack.EXCEPTION_CODE_BYTES:
        for i, words in plain.items():
            graph.nodes[i].params["rq_packed"] = words


def grant_compact_params(graph: Graph, plan: planner.MemoryPlan, replan,
                         among: set) -> planner.MemoryPlan:
    """Store a layer's per-channel parameters bit-packed in Flash (ops/chanpack.py) wherever
    the table they expand to fits in the arena as it is (the table lives in the layer's
    scratch while it runs; for a layer of a fused pair, which runs row by row, the pair's
    scratch holds it from before the first row to the last, see fusion.scratch_of; for a
    layer of a patch stage, which runs once per patch, a buffer expanded before the first
    patch and alive over the whole stage holds it, see patching.stage_channel_params).  Only
    the ``among`` node indices are considered."""
    from .ops import chanpack

    for i in sorted(among):
        node = graph.nodes[i]
        cp = _channel_table(graph, plan, i)
        if cp is None or not chanpack.packable(cp):
            continue
        packed = chanpack.pack(cp)
        size = chanpack.table_bytes(cp.n, cp.group)
        if packed.nbytes >= size:
            continue
        node.params["rq_table_bytes"] = size
        trial = replan()
        if trial.arena_bytes > plan.arena_bytes:
            del node.params["rq_table_bytes"]
            continue
        plan = trial
        node.params["rq_packed"] = packed
    return plan


def grant_optional_scratch(graph: Graph, plan: planner.MemoryPlan, replan) -> planner.MemoryPlan:
    """Give kernels the optional scratch that speeds them up wherever the arena stays the same.

    Nodes ask with ``params["optional_scratch_bytes"]`` (see tinyengine/ops/__init__.py);
    nodes of a patch stage keep their per-patch plan and are left alone.
    """
    first = plan.patch.split + 1 if plan.patch is not None else 0  # after the patch stage
    for node in graph.nodes[first:]:
        want = int(node.params.get("optional_scratch_bytes", 0))
        if not want or node.params.get("scratch_bytes"):
            continue
        node.params["scratch_bytes"] = want
        trial = replan()
        if trial.arena_bytes > plan.arena_bytes:
            node.params["scratch_bytes"] = 0
        else:
            plan = trial
    return plan


def _plan_schedule(graph: Graph, options: CompileOptions) -> planner.MemoryPlan:
    """The memory plan, with the patch schedule --patch / --sram-limit ask for."""
    from . import patching

    def plan_fn(schedule):
        return planner.plan_graph(graph, options.planner, overlap=options.overlap, patch=schedule)

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


def macs(graph: Graph) -> int:
    return sum(ops.get(n.op).macs(n, graph) for n in graph.nodes)


def stamp(c: Compiled) -> dict:
    return {"version": __version__, "model": Path(c.source).name, "model_sha256": c.sha256,
            "board": c.board.name, "options": c.options.describe()}


def write_project(c: Compiled, out_dir) -> dict:
    """Generate the C project for the board into out_dir; returns (and writes) report.json."""
    from .project import emit_project

    out_dir = Path(out_dir)
    gen = codegen.generate(c.graph, c.plan, stamp(c), profile=c.options.profile)
    emit_project(out_dir, c.board, gen.files, gen.kernel_files, stamp(c),
                 unused_switches=gen.unused_switches)
    report = build_report(c, gen)
    check_fit(c, report)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    c.report = report
    return report


def build_report(c: Compiled, gen: codegen.GeneratedModel) -> dict:
    g = c.graph
    io_bytes = sum(g.tensors[t].nbytes for t in g.inputs + g.outputs)
    hio = hostio.host_io_of(g)
    layers = []
    for i, (node, mem) in enumerate(zip(g.nodes, c.plan.per_layer)):
        layers.append({"index": i, "node": node.name, "op": node.op,
                       "macs": ops.get(node.op).macs(node, g),
                       "inputs": [t for t in node.inputs if t is not None and not g.tensors[t].is_const],
                       "outputs": list(node.outputs), **{k: v for k, v in mem.items() if k not in ("node", "op")}})
    return {
        "tinyengine_version": __version__,
        "model": c.source,
        "model_sha256": c.sha256,
        "board": c.board.name,
        "options": c.options.describe(),
        "arena_bytes": c.plan.arena_bytes,
        "io_bytes_in_arena": io_bytes,
        "host_conversions": hio.describe(),
        "stack_reserved_bytes": c.board.stack_bytes,
        # the arena holds inputs, outputs, activations and scratch; the stack is reserved by the
        # linker script.  After `tinyengine run` the measured stack use replaces the reservation.
        "peak_sram_bytes": c.plan.arena_bytes + c.board.stack_bytes,
        "const_bytes": gen.const_bytes,
        "flash_bytes": None,
        "macs": macs(g),
        "macs_executed": c.plan.patch.macs if c.plan.patch is not None else macs(g),
        "patch": c.plan.patch.describe(g) if c.plan.patch is not None else None,
        "fusions": [f.describe(g) for f in c.plan.fusions],
        "compact_params": compact_params_summary(g, c.plan.fusions, c.plan.patch),
        "memory": {"overlap_pairs": len(c.plan.overlaps), "options": c.options.memory_options().strip()},
        "ops": len(g.nodes),
        "layers": layers,
    }


def compact_params_summary(graph: Graph, fusions=(), patch=None) -> dict:
    """Layers whose per-channel parameters are bit-packed, the Flash that saves, and the most
    expanded table bytes in the arena at once (a fused pair holds both its tables, a patch
    stage all of its layers')."""
    packed = [n for n in graph.nodes if "rq_packed" in n.params]
    saved = sum(int(n.params["rq_table_bytes"]) - int(n.params["rq_packed"].nbytes)
                for n in packed)
    held = [int(n.params.get("rq_table_bytes", 0)) for n in graph.nodes]
    for f in fusions:
        held[f.expand] = held[f.dw] = held[f.expand] + held[f.dw]
    if patch is not None:       # a patch stage holds all its tables
        held.append(sum(held[:patch.split + 1]))
    return {"layers": len(packed), "flash_saved_bytes": int(saved),
            "table_scratch_bytes": max(held, default=0)}


def _patch_hint(c: Compiled) -> str:
    """What patch-based inference would need, for the message of a model that does not fit:
    the model compiled with --patch auto (everything the real compile does: fusion, packed
    tables, scratch), so that the figure is the one the user gets."""
    from dataclasses import replace

    if c.plan.patch is not None or c.options.patch:
        return ""
    try:
        alt = compile_model(c.source, replace(c.options, patch="auto"))
    except TinyEngineError:
        return ""
    if alt.plan.patch is None or alt.plan.arena_bytes >= c.plan.arena_bytes:
        return " (patch-based inference does not lower it)"
    need = alt.plan.arena_bytes + c.board.stack_bytes
    verdict = "fits" if need <= c.board.sram_bytes else "still does not fit"
    return f"; with --patch auto it needs {need} ({verdict})"


def check_fit(c: Compiled, report: dict) -> None:
    b = c.board
    if b.sram_bytes and report["peak_sram_bytes"] > b.sram_bytes:
        raise FitError(f"{Path(c.source).name} does not fit {b.name}: it needs {report['peak_sram_bytes']} "
                       f"bytes of SRAM (arena {report['arena_bytes']} + stack {b.stack_bytes}), "
                       f"the board has {b.sram_bytes}{_patch_hint(c)}")
    if b.flash_bytes and report["const_bytes"] > b.flash_bytes:
        raise FitError(f"{Path(c.source).name} does not fit {b.name}: its weights alone need "
                       f"{report['const_bytes']} bytes of Flash, the board has {b.flash_bytes}")
