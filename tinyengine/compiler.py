"""The compiler, top-down: load -> passes -> memory plan -> codegen -> project -> build.

    graph = load_model(path)                      # frontend: file -> validated IR
    graph = set_target(graph, board)              # the kernels are chosen for the board's core
    graph = run_passes(graph, options)            # PASSES, in order, IR validated after each
    plan = memory.plan_memory(graph, ..)          # one static arena (schedule, fusion, tables)
    gen = codegen.generate(graph, plan, ..)       # C from jinja2 templates
    project.emit_project(out_dir, ...)            # self-contained C project for the board
    runner.build(out_dir); runner.run(...)        # firmware on the host or the board (QEMU)

Pipeline layer: this module orchestrates those steps (compile_model / compile_graph ->
write_project -> build_project / build_and_run) and decides nothing itself.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import codegen, hostio, ops, passes, runner
from .boards import Board, get_board
from .errors import FitError, ModelError, TinyEngineError
from .ir import Graph
from .memory import PlanOptions, plan_memory
from .planner import MemoryPlan
from .project import emit_project
from .report import build_report, stamp

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
    """Everything a compile may be asked: the board, the passes and memory techniques to use
    (plan_options() gives the memory plan's part), the firmware's extras."""
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

    def plan_options(self) -> PlanOptions:
        """The memory-plan part of the options (memory.plan_memory)."""
        return PlanOptions(planner=self.planner, overlap=self.overlap, fuse=self.fuse,
                           compact_params=self.compact_params, patch=self.patch,
                           sram_limit=self.sram_limit)

    def passes(self) -> list:
        skip = {p for k, p in OPTIONAL_PASSES.items() if not getattr(self, k)}
        return [p for p in PASSES if not (self.device_float_io and p is hostio.host_io)
                and p not in skip]


@dataclass
class Compiled:
    """A compiled model: its IR after the passes, its memory plan, and (once written and run)
    its report."""
    graph: Graph
    plan: MemoryPlan
    board: Board
    options: CompileOptions
    source: str
    sha256: str
    report: dict = field(default_factory=dict)


def load_model(path, options: CompileOptions | None = None) -> Graph:
    """A .tflite or .onnx file -> validated IR (a float ONNX model is quantized with
    ``options.calibration``)."""
    suffix = Path(str(path)).suffix.lower()
    if suffix == ".tflite":
        from .frontends import tflite
        return tflite.load(path)
    if suffix == ".onnx":
        from .frontends import onnx
        return onnx.load(path, calibration=options.calibration if options else None)
    raise ModelError(f"{path}: unknown model format '{suffix or '(none)'}' (supported: .tflite, .onnx)")


def set_target(graph: Graph, board: Board | str) -> Graph:
    """Have the passes pick kernels for the board's core (DSP or not); without it they pick the
    host's portable ones."""
    board = get_board(board) if isinstance(board, str) else board
    graph.meta["target"] = ops.Target(board.name, board.cpu, board.has_dsp)
    return graph


def run_passes(graph: Graph, options: CompileOptions | None = None,
               prepared: dict | None = None) -> Graph:
    """The passes the options leave in (PASSES, in order), the IR validated after each.
    prepared: a dict kept across calls by a caller that compiles many graphs sharing layers,
    each node's prepared params by passes.node_key (see passes.prepare)."""
    for p in (options or CompileOptions()).passes():
        graph = passes.prepare(graph, prepared) if p is passes.prepare else p(graph)
        graph.validate()
    return graph


def compile_model(path, options: CompileOptions) -> Compiled:
    """A model file compiled for ``options.board``: IR after the passes and its memory plan."""
    get_board(options.board)      # an unknown board is reported before the model is read
    data = Path(path).read_bytes() if Path(str(path)).exists() else b""
    graph = load_model(path, options)
    return compile_graph(graph, options, str(path), hashlib.sha256(data).hexdigest())


def compile_graph(graph: Graph, options: CompileOptions | None = None, source: str | None = None,
                  sha256: str = "") -> Compiled:
    """An IR graph (from load_model or built in memory) compiled for ``options.board``: the
    target set, the passes run, the memory planned.  ``source`` names the model in the
    project's stamp and report (default: the graph's name)."""
    options = options or CompileOptions()
    board = get_board(options.board)
    graph = set_target(graph, board)
    graph = run_passes(graph, options)
    plan = plan_memory(graph, options.plan_options())
    return Compiled(graph, plan, board, options, source or graph.name, sha256)


def write_project(c: Compiled, out_dir) -> dict:
    """Generate the C project for the board into out_dir; returns (and writes) report.json.
    FitError where the model does not fit the board."""
    out_dir = Path(out_dir)
    gen = codegen.generate(c.graph, c.plan, stamp(c), profile=c.options.profile)
    emit_project(out_dir, c.board, gen.files, gen.kernel_files, stamp(c),
                 unused_switches=gen.unused_switches)
    report = build_report(c, gen)
    check_fit(c, report)
    _write_report(out_dir, report)
    c.report = report
    return report


def build_project(c: Compiled, out_dir) -> dict:
    """Build the project write_project wrote into out_dir and add its measured Flash and
    static SRAM to the report (and report.json)."""
    out_dir = Path(out_dir)
    runner.build(out_dir)
    _measure(c.report, out_dir)
    _write_report(out_dir, c.report)
    return c.report


def build_and_run(c: Compiled, out_dir, records: list) -> runner.RunResult:
    """Build and run the firmware in out_dir on model-level records (each a list of one array
    per model input, as hostio.random_records makes them); the outputs come back model-level
    too.  The measured Flash, instructions and stack go into the report (and report.json)."""
    out_dir = Path(out_dir)
    hio = hostio.host_io_of(c.graph)
    runner.build(out_dir)
    result = runner.run(out_dir, [hio.to_device(r) for r in records], runner.output_specs(c.graph))
    result.outputs = [hio.from_device(o) for o in result.outputs]
    sizes = _measure(c.report, out_dir)
    if result.instructions is not None:
        c.report["instructions"] = result.instructions
    if result.stack_bytes is not None:
        c.report["stack_bytes"] = result.stack_bytes
        # SRAM the inference touches: every static buffer (arena, model I/O, firmware state) plus
        # the stack actually used
        c.report["peak_sram_bytes"] = sizes["sram_static_bytes"] + result.stack_bytes
    _write_report(out_dir, c.report)
    return result


def _measure(report: dict, out_dir: Path) -> dict:
    sizes = runner.size(out_dir)
    report["flash_bytes"] = sizes["flash_bytes"]
    report["static_sram_bytes"] = sizes["sram_static_bytes"]
    return sizes


def _write_report(out_dir: Path, report: dict) -> None:
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")


def _patch_hint(c: Compiled) -> str:
    """What patch-based inference would need, for the message of a model that does not fit:
    the model compiled with --patch auto (everything the real compile does: fusion, packed
    tables, scratch), so that the figure is the one the user gets."""
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
