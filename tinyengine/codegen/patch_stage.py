"""The C of a patch-based first stage (tinyengine/patching.py decides the schedule).

Renderer layer: one entry of codegen's call list for the whole stage.  Each patch's calls
are rendered with the ops' own templates and the patch nodes' own parameters; patches that
differ only in integer literals become one loop over a table of those literals
(:func:`literal_loop`, codegen_templates/patch_stage.c.j2).
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..ir import Graph
from ..ops import chanpack
from ..patching import PatchSchedule, stage_channel_params
from .emit import LITERAL, ConstArray, c_comment, param_symbols


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
    split = [LITERAL.split(b) for b in bodies]
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
    s: PatchSchedule = plan.patch
    arena = "te_arena"

    def at(off) -> str:
        return f"((int8_t *)({arena} + {off}))"

    # bit-packed per-channel tables (memory.grant_compact_params): expanded once, before
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
