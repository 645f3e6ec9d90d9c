"""Per-layer profile of a compiled model: where the instructions and the SRAM go.

A model compiled with ``CompileOptions(profile=True)`` calls ``te_profile_mark(i)`` after layer i;
the firmware pauses its instruction counter there and prints ``TE_LAYER <i> <count>``, which
``runner.run`` returns as ``RunResult.layer_counts``.  This module turns those counts, the MACs
of each op and the memory plan into:

    profile.json   totals and one row per layer (instructions, MACs, instructions/MAC, SRAM)
    profile.txt    the same table as text (also printed by `tinyengine profile`)
    arena.png      the arena over the layers: every buffer as a box (offset x lifetime), with
                   the instructions and the live bytes of each layer below (needs matplotlib)

Counts are exact (QEMU -icount).  Each layer's count includes the few instructions of its mark
(the call and the timer pause); the total of the profiled build is therefore slightly larger than
the total of a normal build, by ``marks x (cost of one mark)``.
"""
from __future__ import annotations

import json
from pathlib import Path

from . import ops
from .errors import TinyEngineError


class ProfileError(TinyEngineError):
    """The model cannot be profiled on this board (no counter, counter wrapped, no marks)."""


def layer_rows(compiled, layer_counts: list) -> list:
    """One dict per layer: index, node, op, instructions, macs, instructions_per_mac, SRAM use."""
    g, plan = compiled.graph, compiled.plan
    if len(layer_counts) != len(g.nodes):
        raise ProfileError(f"the firmware reported {len(layer_counts)} layers, the model has "
                           f"{len(g.nodes)}: was the project compiled with profiling on?")
    in_use = arena_bytes_in_use(compiled)
    rows = []
    for i, (node, count) in enumerate(zip(g.nodes, layer_counts)):
        mem = plan.per_layer[i] if i < len(plan.per_layer) else {}
        macs = ops.get(node.op).macs(node, g)
        rows.append({
            "index": i, "node": node.name, "op": node.op,
            "instructions": int(count), "macs": int(macs),
            "instructions_per_mac": round(count / macs, 3) if macs else None,
            "sram_in_use_bytes": in_use[i],
            "arena_high_water": mem.get("arena_high_water"),
            "scratch_bytes": mem.get("scratch_bytes", 0),
        })
    return rows


def summarize(compiled, result, report: dict) -> dict:
    """The profile (profile.json's content) of one profiled run."""
    if compiled.board.kind == "host" or result.instructions is None:
        raise ProfileError(f"board {compiled.board.name} cannot count instructions: profile on a "
                           "Cortex-M board (it runs under QEMU with -icount)")
    if result.layer_counts is None:
        raise ProfileError("the firmware printed no per-layer counts (TE_LAYER lines): the project "
                           "was not compiled with CompileOptions(profile=True)")
    rows = layer_rows(compiled, result.layer_counts)
    total = int(result.instructions)
    layer_sum = sum(r["instructions"] for r in rows)
    macs = sum(r["macs"] for r in rows)
    return {
        "model": compiled.source,
        "board": compiled.board.name,
        "options": compiled.options.describe(),
        "instructions": total,
        "layer_instructions_sum": layer_sum,
        "unattributed_instructions": total - layer_sum,   # te_invoke's entry/exit after the last mark
        "macs": macs,
        "instructions_per_mac": round(total / macs, 3) if macs else None,
        "arena_bytes": compiled.plan.arena_bytes,
        "peak_sram_bytes": report.get("peak_sram_bytes"),
        "stack_bytes": report.get("stack_bytes"),
        "flash_bytes": report.get("flash_bytes"),
        "layers": rows,
    }


def _fmt(v, spec: str = ",") -> str:
    return "-" if v is None else format(v, spec)


def format_table(prof: dict, name_width: int = 32) -> str:
    """The per-layer table as text, with a totals line."""
    head = (f"{'#':>3}  {'op':<18} {'node':<{name_width}} {'instructions':>13} {'%':>5} {'MACs':>11} "
            f"{'instr/MAC':>9} {'SRAM in use':>11} {'arena top':>10}")
    lines = [head, "-" * len(head)]
    total = max(prof["instructions"], 1)
    for r in prof["layers"]:
        name = r["node"] if len(r["node"]) <= name_width else "..." + r["node"][-(name_width - 3):]
        ipm = "-" if r["instructions_per_mac"] is None else f"{r['instructions_per_mac']:.2f}"
        lines.append(f"{r['index']:>3}  {r['op']:<18} {name:<{name_width}} {r['instructions']:>13,} "
                     f"{100.0 * r['instructions'] / total:>5.1f} {r['macs']:>11,} {ipm:>9} "
                     f"{_fmt(r['sram_in_use_bytes']):>11} {_fmt(r['arena_high_water']):>10}")
    lines.append("-" * len(head))
    ipm = "-" if prof["instructions_per_mac"] is None else f"{prof['instructions_per_mac']:.2f}"
    lines.append(f"{'':>3}  {'total':<18} {'':<{name_width}} {prof['instructions']:>13,} {100.0:>5.1f} "
                 f"{prof['macs']:>11,} {ipm:>9} {_fmt(prof['arena_bytes']):>11}")
    lines.append(f"{prof['board']}: peak SRAM {_fmt(prof['peak_sram_bytes'])} B (arena "
                 f"{prof['arena_bytes']:,} B, stack {_fmt(prof['stack_bytes'])} B), Flash "
                 f"{_fmt(prof['flash_bytes'])} B; {prof['unattributed_instructions']:,} instructions "
                 f"outside the layers; each layer's count includes its profiling mark")
    return "\n".join(lines)


def arena_blocks(compiled) -> list:
    """Every arena buffer as (name, kind, offset, bytes, first layer, last layer); kind is
    'input', 'output', 'scratch' or 'activation'."""
    g, plan = compiled.graph, compiled.plan
    n = len(g.nodes)
    blocks = []
    for name, (first, last, size) in plan.lifetimes.items():
        if name.startswith("scratch:") and name[len("scratch:"):] in plan.scratch:
            offset, kind = plan.scratch[name[len("scratch:"):]][0], "scratch"
        elif name in plan.offsets:
            offset = plan.offsets[name]
            kind = "input" if name in g.inputs else "output" if name in g.outputs else "activation"
        else:
            continue  # a planner buffer that is neither a tensor nor a node's scratch
        blocks.append((name, kind, int(offset), int(size), int(first), int(min(last, n - 1))))
    return blocks


def arena_bytes_in_use(compiled) -> list:
    """Per layer: the arena bytes covered by the buffers alive at it (overlapping buffers, such as
    an output streamed over its own input, count once)."""
    blocks = arena_blocks(compiled)
    used = []
    for i in range(len(compiled.graph.nodes)):
        spans = sorted((o, o + s) for _, _, o, s, first, last in blocks if first <= i <= last)
        total, end = 0, 0
        for lo, hi in spans:
            if hi > end:
                total += hi - max(lo, end)
                end = hi
        used.append(total)
    return used


_SHORT = {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "dwconv", "FULLY_CONNECTED": "fc",
          "AVERAGE_POOL_2D": "avgpool", "MAX_POOL_2D": "maxpool", "CONCATENATION": "concat",
          "RESIZE_NEAREST_NEIGHBOR": "resize", "LOG_SOFTMAX": "logsoftmax"}
_COLORS = {"input": "#4C72B0", "output": "#55A868", "activation": "#DD8452", "scratch": "#C44E52"}


def plot_arena(compiled, prof: dict, path) -> None:
    """arena.png: the arena map over the layers, and instructions and live bytes per layer."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    rows = prof["layers"]
    n = len(rows)
    fig = Figure(figsize=(max(8.0, min(0.28 * n + 3, 30.0)), 8.0), constrained_layout=True)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    kib = 1024.0
    for name, kind, offset, size, first, last in arena_blocks(compiled):
        top.add_patch(Rectangle((first - 0.45, offset / kib), last - first + 0.9, size / kib,
                                facecolor=_COLORS[kind], edgecolor="black", linewidth=0.4, alpha=0.85))
    arena = prof["arena_bytes"]
    top.axhline(arena / kib, color="black", linestyle="--", linewidth=0.8)
    top.text(-0.4, arena / kib, f" arena {arena:,} B", va="bottom", fontsize=8)
    top.set_ylim(0, max(arena, 1) / kib * 1.08)
    top.set_xlim(-0.6, n - 0.4)
    top.set_ylabel("arena offset (KiB)")
    top.set_title(f"{Path(prof['model']).name} on {prof['board']}: arena {arena:,} B, peak SRAM "
                  f"{_fmt(prof['peak_sram_bytes'])} B, {prof['instructions']:,} instructions")
    top.legend(handles=[Patch(facecolor=c, label=k) for k, c in _COLORS.items()], loc="upper right",
               fontsize=8, ncol=4)

    x = list(range(n))
    bottom.bar(x, [r["instructions"] / 1e6 for r in rows], color="#8172B3", width=0.8)
    bottom.set_ylabel("instructions (millions)")
    live = bottom.twinx()
    live.step(x, [(r["sram_in_use_bytes"] or 0) / kib for r in rows], where="mid", color="#DD8452")
    live.set_ylabel("arena bytes in use (KiB)", color="#DD8452")
    live.set_ylim(0, max(arena, 1) / kib * 1.08)
    bottom.set_xticks(x)
    bottom.set_xticklabels([f"{r['index']} {_SHORT.get(r['op'], r['op'].lower()[:10])}" for r in rows],
                           rotation=90, fontsize=7)
    bottom.set_xlabel("layer")
    fig.savefig(str(path), dpi=110)


def write_profile(compiled, result, report: dict, out_dir) -> tuple:
    """Write profile.json, profile.txt and arena.png into out_dir.

    Returns (profile, table text, picture path, note): picture is None when matplotlib is missing,
    and note then says so (the caller prints it)."""
    out = Path(out_dir)
    prof = summarize(compiled, result, report)
    table = format_table(prof)
    (out / "profile.json").write_text(json.dumps(prof, indent=2) + "\n")
    (out / "profile.txt").write_text(table + "\n")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return prof, table, None, ("matplotlib is not installed (pip install 'tinyengine[profile]'); "
                                   "arena.png not written")
    picture = out / "arena.png"
    plot_arena(compiled, prof, picture)
    return prof, table, picture, None
