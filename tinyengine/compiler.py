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

from . import __version__, codegen, hostio, ops, passes, planner
from .boards import Board, get_board
from .errors import FitError, ModelError
from .ir import Graph

PASSES = [
    passes.check_ops,
    passes.remove_dead_nodes,
    passes.prepare,
    hostio.host_io,           # float QUANTIZE/DEQUANTIZE at the model's edges run on the host
]


@dataclass
class CompileOptions:
    board: str = "stm32f746"
    planner: str = "greedy"
    device_float_io: bool = False   # keep float edge QUANTIZE/DEQUANTIZE in the firmware

    def describe(self) -> str:
        return f"planner={self.planner}" + (" device_float_io" if self.device_float_io else "")

    def passes(self) -> list:
        return [p for p in PASSES if not (self.device_float_io and p is hostio.host_io)]


@dataclass
class Compiled:
    graph: Graph
    plan: planner.MemoryPlan
    board: Board
    options: CompileOptions
    source: str
    sha256: str
    report: dict = field(default_factory=dict)


def load_model(path) -> Graph:
    suffix = Path(str(path)).suffix.lower()
    if suffix == ".tflite":
        from .frontends import tflite
        return tflite.load(path)
    if suffix == ".onnx":
        raise ModelError(f"{path}: ONNX input is not supported yet (supported: .tflite)")
    raise ModelError(f"{path}: unknown model format '{suffix or '(none)'}' (supported: .tflite)")


def run_passes(graph: Graph, options: CompileOptions | None = None) -> Graph:
    for p in (options or CompileOptions()).passes():
        graph = p(graph)
        graph.validate()
    return graph


def compile_model(path, options: CompileOptions) -> Compiled:
    board = get_board(options.board)
    data = Path(path).read_bytes() if Path(str(path)).exists() else b""
    graph = load_model(path)
    graph.meta["target"] = ops.Target(board.name, board.cpu, board.has_dsp)
    graph = run_passes(graph, options)
    plan = planner.plan_graph(graph, options.planner)
    c = Compiled(graph, plan, board, options, str(path), hashlib.sha256(data).hexdigest())
    return c


def macs(graph: Graph) -> int:
    return sum(ops.get(n.op).macs(n, graph) for n in graph.nodes)


def stamp(c: Compiled) -> dict:
    return {"version": __version__, "model": Path(c.source).name, "model_sha256": c.sha256,
            "board": c.board.name, "options": c.options.describe()}


def write_project(c: Compiled, out_dir) -> dict:
    """Generate the C project for the board into out_dir; returns (and writes) report.json."""
    from .project import emit_project

    out_dir = Path(out_dir)
    gen = codegen.generate(c.graph, c.plan, stamp(c))
    emit_project(out_dir, c.board, gen.files, gen.kernel_files, stamp(c))
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
        "ops": len(g.nodes),
        "layers": layers,
    }


def check_fit(c: Compiled, report: dict) -> None:
    b = c.board
    if b.sram_bytes and report["peak_sram_bytes"] > b.sram_bytes:
        raise FitError(f"{Path(c.source).name} does not fit {b.name}: it needs {report['peak_sram_bytes']} "
                       f"bytes of SRAM (arena {report['arena_bytes']} + stack {b.stack_bytes}), "
                       f"the board has {b.sram_bytes}")
    if b.flash_bytes and report["const_bytes"] > b.flash_bytes:
        raise FitError(f"{Path(c.source).name} does not fit {b.name}: its weights alone need "
                       f"{report['const_bytes']} bytes of Flash, the board has {b.flash_bytes}")
