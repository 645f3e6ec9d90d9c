"""report.json: what a compiled model takes (arena, Flash, MACs) and what the plan decided.

Project layer: reads the compiled model (graph, memory plan, board, options) and the
generated C's constant bytes; ``tinyengine run`` adds the measured figures.
"""
from __future__ import annotations

from pathlib import Path

from . import hostio, ops
from .ir import Graph
from .version import __version__


def macs(graph: Graph) -> int:
    return sum(ops.get(n.op).macs(n, graph) for n in graph.nodes)


def stamp(c) -> dict:
    """What the generated project says it was made from (a compiler.Compiled)."""
    return {"version": __version__, "model": Path(c.source).name, "model_sha256": c.sha256,
            "board": c.board.name, "options": c.options.describe()}


def build_report(c, gen) -> dict:
    """report.json of a compiler.Compiled whose C is ``gen`` (a codegen.GeneratedModel)."""
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
