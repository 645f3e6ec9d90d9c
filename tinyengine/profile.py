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

A patch stage (tinyengine/patching.py) runs its layers once per patch; each patch marks each of
its layers, and the runner sums a layer's lines.  The stage is one row of the table (kind
"patch_stage": its instructions, the MACs it executes, halo recomputation included, its SRAM),
with its layers, summed over the patches, as sub-rows ("layers"); the copy of a patch's input
region counts with the first layer, the copy of its result and the loop with the split layer.
"""
from __future__ import annotations

import json
from pathlib import Path

from . import ops
from .errors import TinyEngineError


class ProfileError(TinyEngineError):
    """The model cannot be profiled on this board (no counter, counter wrapped, no marks)."""


def _executed_macs(compiled) -> list:
    """Per node, the MACs the firmware executes: a patch stage's nodes summed over the patches
    (their halos computed more than once)."""
    g, stage = compiled.graph, compiled.plan.patch
    macs = [ops.get(n.op).macs(n, g) for n in g.nodes]
    if stage is not None:
        for k in range(stage.split + 1):
            macs[k] = sum(ops.get(p.graph.nodes[k].op).macs(p.graph.nodes[k], p.graph)
                          for p in stage.patches)
    return macs


def layer_rows(compiled, layer_counts: list) -> list:
    """One dict per layer: index, node, op, instructions, macs, instructions_per_mac, SRAM use.
    A patch stage's layers: their counts and MACs summed over the patches."""
    g, plan = compiled.graph, compiled.plan
    if len(layer_counts) != len(g.nodes):
        raise ProfileError(f"the firmware reported {len(layer_counts)} layers, the model has "
                           f"{len(g.nodes)}: was the project compiled with profiling on?")
    in_use = arena_bytes_in_use(compiled)
    executed = _executed_macs(compiled)
    rows = []
    for i, (node, count) in enumerate(zip(g.nodes, layer_counts)):
        mem = plan.per_layer[i] if i < len(plan.per_layer) else {}
        macs = executed[i]
        rows.append({
            "index": i, "node": node.name, "op": node.op,
            "instructions": int(count), "macs": int(macs),
            "instructions_per_mac": round(count / macs, 3) if macs else None,
            "sram_in_use_bytes": in_use[i],
            "arena_high_water": mem.get("arena_high_water"),
            "scratch_bytes": mem.get("scratch_bytes", 0),
        })
    return rows


def stage_row(compiled, rows: list) -> dict:
    """The patch stage as one row over its layers' rows (nodes 0 .. split)."""
    g, s = compiled.graph, compiled.plan.patch
    count = sum(r["instructions"] for r in rows)
    macs = sum(r["macs"] for r in rows)
    whole = sum(ops.get(n.op).macs(n, g) for n in g.nodes[:s.split + 1])
    return {
        "index": 0, "last_index": s.split, "kind": "patch_stage",
        "node": f"patch stage {s.grid[0]}x{s.grid[1]}: layers 0-{s.split}", "op": "PATCH_STAGE",
        "instructions": count, "macs": macs,
        "instructions_per_mac": round(count / macs, 3) if macs else None,
        "macs_without_patches": whole, "halo_macs": macs - whole,
        "sram_in_use_bytes": max(r["sram_in_use_bytes"] for r in rows),
        "arena_high_water": max((r["arena_high_water"] or 0 for r in rows), default=None),
        "scratch_bytes": max(r["scratch_bytes"] for r in rows),
        "patches": len(s.patches), "spec": s.spec(),
        "layers": rows,
    }


def layer_list(prof: dict) -> list:
    """The per-layer rows of a profile, a patch stage's layers in place of its row."""
    return [sub for r in prof["layers"] for sub in (r.get("layers") or [r])]


def summarize(compiled, result, report: dict) -> dict:
    """The profile (profile.json's content) of one profiled run."""
    if compiled.board.kind == "host" or result.instructions is None:
        raise ProfileError(f"board {compiled.board.name} cannot count instructions: profile on a "
                           "Cortex-M board (it runs under QEMU with -icount)")
    if result.layer_counts is None:
        raise ProfileError("the firmware printed no per-layer counts (TE_LAYER lines): the project "
                           "was not compiled with CompileOptions(profile=True)")
    rows = layer_rows(compiled, result.layer_counts)
    stage = compiled.plan.patch
    if stage is not None:
        rows = [stage_row(compiled, rows[:stage.split + 1])] + rows[stage.split + 1:]
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
        "macs": macs,                                     # executed: patch halos included
        "instructions_per_mac": round(total / macs, 3) if macs else None,
        "patch": None if stage is None else {
            "spec": stage.spec(), "grid": list(stage.grid), "patches": len(stage.patches),
            "split_index": stage.split, "macs_whole_model": stage.macs_whole,
            "macs_with_patches": stage.macs},
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
    head = (f"{'#':>5}  {'op':<20} {'node':<{name_width}} {'instructions':>13} {'%':>5} {'MACs':>11} "
            f"{'instr/MAC':>9} {'SRAM in use':>11} {'arena top':>10}")
    lines = [head, "-" * len(head)]
    total = max(prof["instructions"], 1)

    def line(r, index, op):
        name = r["node"] if len(r["node"]) <= name_width else "..." + r["node"][-(name_width - 3):]
        ipm = "-" if r["instructions_per_mac"] is None else f"{r['instructions_per_mac']:.2f}"
        lines.append(f"{index:>5}  {op:<20} {name:<{name_width}} {r['instructions']:>13,} "
                     f"{100.0 * r['instructions'] / total:>5.1f} {r['macs']:>11,} {ipm:>9} "
                     f"{_fmt(r['sram_in_use_bytes']):>11} {_fmt(r['arena_high_water']):>10}")

    notes = []
    for r in prof["layers"]:
        if r.get("kind") == "patch_stage":
            line(r, f"{r['index']}-{r['last_index']}", "patch stage")
            for sub in r["layers"]:
                line(sub, f"({sub['index']})", "  " + sub["op"])
            whole = prof["patch"]["macs_whole_model"] if prof.get("patch") else 0
            notes.append(f"patch stage {r['spec']}: {r['patches']} patches; the rows in () are its "
                         f"layers summed over the patches (counted once, in the stage row); MACs "
                         f"executed, {r['halo_macs']:,} of halo recomputation included (+"
                         f"{100.0 * r['halo_macs'] / max(r['macs_without_patches'], 1):.1f}% in "
                         f"the stage, +{100.0 * r['halo_macs'] / max(whole, 1):.1f}% in the model); "
                         f"SRAM in the stage: one patch's buffers")
        else:
            line(r, r["index"], r["op"])
    lines.append("-" * len(head))
    ipm = "-" if prof["instructions_per_mac"] is None else f"{prof['instructions_per_mac']:.2f}"
    lines.append(f"{'':>5}  {'total':<20} {'':<{name_width}} {prof['instructions']:>13,} {100.0:>5.1f} "
                 f"{prof['macs']:>11,} {ipm:>9} {_fmt(prof['arena_bytes']):>11}")
    lines.extend(notes)
    lines.append(f"{prof['board']}: peak SRAM {_fmt(prof['peak_sram_bytes'])} B (arena "
                 f"{prof['arena_bytes']:,} B, stack {_fmt(prof['stack_bytes'])} B), Flash "
                 f"{_fmt(prof['flash_bytes'])} B; {prof['unattributed_instructions']:,} instructions "
                 f"outside the layers; each layer's count includes its profiling mark")
    return "\n".join(lines)


def arena_blocks(compiled) -> list:
    """Every arena buffer as (name, kind, offset, bytes, first layer, last layer); kind is
    'input', 'output', 'scratch', 'activation' or 'patch' (a patch stage's patch-sized tensors
    and copy buffers, reused by every patch; its expanded channel tables are 'scratch')."""
    g, plan = compiled.graph, compiled.plan
    n = len(g.nodes)
    patch_sized = set(plan.patch.sizes) if plan.patch is not None else set()
    blocks = []
    for name, (first, last, size) in plan.lifetimes.items():
        if name.startswith("scratch:") and name[len("scratch:"):] in plan.scratch:
            offset, kind = plan.scratch[name[len("scratch:"):]][0], "scratch"
        elif name in plan.extra:          # a patch stage's copy-in / copy-out buffer or table
            offset = plan.extra[name]
            kind = "scratch" if name.startswith("table:") else "patch"
        elif name in patch_sized:
            offset, kind = plan.offsets[name], "patch"
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
_COLORS = {"input": "#4C72B0", "output": "#55A868", "activation": "#DD8452", "scratch": "#C44E52",
           "patch": "#8C8C8C"}


def plot_arena(compiled, prof: dict, path) -> None:
    """arena.png: the arena map over the layers, and instructions and live bytes per layer."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    rows = layer_list(prof)
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
    stage = compiled.plan.patch
    title = (f"{Path(prof['model']).name} on {prof['board']}: arena {arena:,} B, peak SRAM "
             f"{_fmt(prof['peak_sram_bytes'])} B, {prof['instructions']:,} instructions")
    if stage is not None:     # the stage's layers run once per patch: its buffers are per patch
        title += (f"\npatch stage {stage.grid[0]}x{stage.grid[1]} over layers 0-{stage.split} "
                  f"(shaded): {len(stage.patches)} patches; its buffers are one patch's, its "
                  f"instructions summed over the patches")
    top.set_title(title)
    kinds = [k for k in _COLORS if k != "patch" or compiled.plan.patch is not None]
    top.legend(handles=[Patch(facecolor=_COLORS[k], label=k) for k in kinds], loc="upper right",
               fontsize=8, ncol=len(kinds))
    if stage is not None:
        for ax in (top, bottom):
            ax.axvspan(-0.5, stage.split + 0.5, color="#BBBBBB", alpha=0.25, zorder=0)

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
