"""TinyEngine: a compiler and runtime for deep learning on microcontrollers.

The public API (docs/API.md): what the CLI, tinytrain and tinynas use; everything else is
internal.  The pipeline, step by step::

    import tinyengine as te

    opts = te.CompileOptions(board="stm32f746", patch="auto")
    graph = te.load_model("model.tflite", opts)        # file -> IR (te.Graph)
    graph = te.set_target(graph, opts.board)           # kernels for the board's core
    graph = te.run_passes(graph, opts)                 # check, fold, prepare, reorder
    plan = te.plan_memory(graph, opts.plan_options())  # arena: schedule, fusion, tables
    # or all of the above at once, from a file or an in-memory graph:
    c = te.compile_model("model.tflite", opts)         # c.graph, c.plan, c.board
    report = te.write_project(c, "out/")               # C project + report.json
    result = te.build_and_run(c, "out/", te.random_records(c.graph, 1, seed=0))

Layers, lowest first.  A module imports only modules of its own layer or of lower ones, and
no import circle runs through any layer (tests/test_layers.py reads this table):

    core        version, errors, ir, quant
    ops         ops, ops.*, boards, reference
    frontend    frontends, frontends.*, quantizer, passes, hostio
    schedule    regions, overlap, patching, fusion
    memory      planner, memory
    C helpers   codegen.emit
    renderers   codegen, codegen.*
    project     project, runner, golden, report, profile
    pipeline    compiler
    API         tinyengine
    CLI         cli
"""
from .boards import BOARDS, Board, UnknownBoardError, get_board
from .codegen import KERNEL_DIR, TEMPLATES, ConstArray, GeneratedModel, c_comment, ctype_of, \
    environment, generate
from .compiler import PASSES, CompileOptions, Compiled, build_and_run, build_project, \
    compile_graph, compile_model, load_model, run_passes, set_target, write_project
from .errors import FitError, IRError, ModelError, PatchError, TinyEngineError, UnsupportedError, \
    run_command
from .golden import run_onnxruntime_many, run_tflm_many
from .hostio import host_io_of, random_records
from .ir import Graph, Node, QuantParams, Tensor
from .memory import PlanOptions, plan_memory
from .ops import OpDef, Target
from .ops import get as get_op
from .ops.conv import ACC_INIT_VARIES
from .ops import register as register_op
from .ops.float_edge import FLOAT_ATOL, FLOAT_RTOL
from .planner import MemoryPlan
from .profile import write_profile
from .project import emit_project
from .quantizer import Calibration
from .reference import run as run_reference
from .runner import BuildError, RunError, RunResult, output_specs, toolchain_available
from .runner import build as make_project
from .runner import size as project_size
from .version import __version__

__all__ = [
    "__version__",
    # IR and errors
    "Graph", "Node", "Tensor", "QuantParams", "OpDef", "register_op", "get_op", "Target",
    "ACC_INIT_VARIES",
    "TinyEngineError", "ModelError", "FitError", "PatchError", "IRError", "UnsupportedError",
    "UnknownBoardError", "BuildError", "RunError", "run_command",
    # boards
    "BOARDS", "Board", "get_board",
    # load, passes, memory plan
    "CompileOptions", "Calibration", "load_model", "set_target", "PASSES", "run_passes",
    "PlanOptions", "MemoryPlan", "plan_memory",
    # compile, generate, write
    "Compiled", "compile_model", "compile_graph", "write_project",
    "generate", "GeneratedModel", "emit_project",
    "environment", "c_comment", "ConstArray", "ctype_of", "TEMPLATES", "KERNEL_DIR",
    # build and run
    "toolchain_available", "build_project", "build_and_run", "make_project", "project_size",
    "RunResult", "output_specs",
    "host_io_of", "random_records",
    # check and profile
    "run_tflm_many", "run_onnxruntime_many", "run_reference", "write_profile",
    "FLOAT_RTOL", "FLOAT_ATOL",
]
