"""The model renderer: a planned graph -> model.c, model.h, weights.c, weights.h.

All C text comes from jinja2 templates in codegen_templates/: the model skeleton
(model.c.j2, model.h.j2, weights.*.j2) and one call template per op
(codegen_templates/ops/).  Python decides everything (offsets, parameters, which kernel);
the generated C holds no target #ifdefs.  A patch stage's C comes from
codegen/patch_stage.py, a fused pair's from codegen/fused_pair.py.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import ops
from ..ir import Graph
from ..ops import chanpack
from ..planner import MemoryPlan
from .emit import KERNEL_DIR, ConstArray, c_comment, c_string, ctype_of, environment
from .fused_pair import render_pair
from .patch_stage import render_stage

# the byte copy of RESHAPE and of a fused pair's ring shift (the firmware links no libc memcpy)
TEMPLATE_HELPERS = ("te_move_s8.c",)
DTYPE_CODES = {"int8": 0, "uint8": 1, "int16": 2, "int32": 3, "float32": 4, "int64": 5}


@dataclass
class GeneratedModel:
    files: dict          # file name -> text
    kernel_files: list   # firmware/kernels/*.c used
    const_bytes: int     # bytes of constant data in Flash
    symbols: dict        # tensor -> C expression
    # kernel switches no call uses (KernelSwitches): -D<name>=0 in the Makefile
    unused_switches: list = field(default_factory=list)
    state: dict = field(default_factory=dict)   # generate's state key -> its SRAM array symbol


def generate(graph: Graph, plan: MemoryPlan, stamp: dict, profile: bool = False, state=(),
             templates: dict | None = None, context: dict | None = None) -> GeneratedModel:
    """profile: te_invoke() calls te_profile_mark(i) after layer i (per-layer counts).

    state: constants the firmware rewrites (tinytrain's trained parameters): each a constant
    tensor's name or a (node name, param key) pair of a node's array param; each becomes a
    writable array in SRAM (``te_state_*``, defined in weights.c, its initial value copied
    from Flash by the C start-up, all-zero ones in .bss) which every call reads instead of
    the constant; the k-th key's array is ``te_state_<k>``.  templates: file name ->
    template replacing the default one (model.c.j2, ...); context: extra template variables."""
    env = environment()
    arena = "te_arena"
    state = {key: f"te_state_{k}" for k, key in enumerate(state)}
    states: dict = {}      # key -> ConstArray of its initial value (a writable array)

    def ptr(tname: str) -> str:
        t = graph.tensors[tname]
        return f"(({t.c_type} *)({arena} + {plan.offsets[tname]}))"

    consts: dict = {}
    const_of_tensor: dict = {}
    for i, (name, t) in enumerate(graph.tensors.items()):
        if t.is_const:
            sym = state.get(name, f"te_const_{i}")
            arr = ConstArray(sym, t.c_type, np.ascontiguousarray(t.data), c_comment(name))
            if name in state:
                states[name] = arr
            else:
                consts[sym] = arr
            const_of_tensor[name] = sym

    calls = []
    kernel_files: list = []
    stage = getattr(plan, "patch", None)   # patch-based first stage (tinyengine/patching.py)
    fused = {f.expand: f for f in getattr(plan, "fusions", [])}   # tinyengine/fusion.py
    fused_dw = {f.dw for f in fused.values()}
    for idx, node in enumerate(graph.nodes):
        if idx in fused:
            call = render_pair(env, graph, plan, fused[idx], consts, const_of_tensor, kernel_files)
            if profile:     # the pair's count goes to the expand layer, ~0 to the depthwise one
                call["body"] += f"\nte_profile_mark({idx}u);"
            calls.append(call)
            continue
        if idx in fused_dw:
            continue
        if stage is not None and idx <= stage.split:
            if idx == stage.split:
                calls.append(render_stage(env, graph, plan, consts, const_of_tensor,
                                          kernel_files, profile=profile))
            continue
        opdef = ops.get(node.op)
        p = {}
        for key, value in node.params.items():
            if isinstance(value, np.ndarray):
                sym = state.get((node.name, key), f"te_n{idx}_{key}")
                arr = ConstArray(sym, ctype_of(value), np.ascontiguousarray(value),
                                 c_comment(f"{node.name}: {key}"))
                if (node.name, key) in state:
                    states[(node.name, key)] = arr
                else:
                    consts[sym] = arr
                p[key] = sym
            else:
                p[key] = value
        inp = [None if t is None else (const_of_tensor[t] if graph.tensors[t].is_const else ptr(t))
               for t in node.inputs]
        out = [ptr(t) for t in node.outputs]
        scratch = "NULL"
        if node.name in plan.scratch:
            scratch = f"((int8_t *)({arena} + {plan.scratch[node.name][0]}))"
        scratch_base = scratch
        prelude = ""
        cp = opdef.channel_params(node)
        if "rq_packed" in node.params:   # bit-packed per-channel table -> expanded into scratch
            chanpack.bind(p, cp.names, cp.n, scratch_base)
            scratch = f"({scratch_base} + {node.params['rq_table_bytes']})"
            prelude = env.get_template("unpack_channels.c.j2").render(
                packed=p["rq_packed"], n=cp.n, group=cp.group, table=scratch_base).rstrip() + "\n"
        # a node whose table is state (rewritten at run time: tinytrain) passes its arrays;
        # the te_conv_args path would copy the table into a constant
        rewritten = any((node.name, key) in state for key in node.params)
        args = None if rewritten else _conv_args(cp, opdef, node, graph, idx, p, consts,
                                                 scratch_base)
        same_buffer = bool(node.inputs and node.inputs[0] is not None and node.outputs
                           and plan.same_buffer(node.inputs[0], node.outputs[0]))
        body = env.get_template(opdef.template_for(node)).render(
            node=node, p=p, inp=inp, out=out, scratch=scratch, same_buffer=same_buffer,
            prelude=prelude, args=args,
            tin=[graph.tensors[t] if t is not None else None for t in node.inputs],
            tout=[graph.tensors[t] for t in node.outputs])
        if "rq_packed" in node.params and p["rq_packed"] not in body:
            raise AssertionError(f"{opdef.template_for(node)} ignores the packed channel table")
        if "rq_packed" in node.params or args is not None:
            for k in ("te_unpack_channels.c", "te_conv_args.c"):
                if k not in kernel_files:
                    kernel_files.append(k)
        calls.append({"index": idx, "node": node, "body": body.rstrip(),
                      "inputs": [c_comment(t) for t in node.inputs if t is not None and not graph.tensors[t].is_const],
                      "outputs": [c_comment(t) for t in node.outputs]})
        for k in opdef.kernel_sources(node):
            if k not in kernel_files:
                kernel_files.append(k)

    # only constants some call refers to go to Flash
    text = "\n".join(c["body"] for c in calls)
    for k in TEMPLATE_HELPERS:      # kernels a template calls itself, not through an op's kernels
        if re.search(rf"\b{Path(k).stem}\(", text) and k not in kernel_files:
            kernel_files.append(k)
    used = set(re.findall(r"\bte_(?:const|n)\w+", text))
    const_list = [c for s, c in consts.items() if s in used]

    headers = sorted({Path(k).with_suffix(".h").name for k in kernel_files})
    io = {
        "inputs": [_io(graph, t, ptr(t)) for t in graph.inputs],
        "outputs": [_io(graph, t, ptr(t)) for t in graph.outputs],
    }
    missing = set(state) - set(states)
    if missing:
        raise ValueError(f"state {sorted(map(str, missing))[0]} is no constant of the graph")
    ctx = dict(stamp=stamp, graph=graph, plan=plan, calls=calls, consts=const_list, headers=headers,
               profile=profile, io=io, arena_bytes=max(plan.arena_bytes, 16),
               tensors=[(c_comment(t), plan.offsets[t], graph.tensors[t].nbytes) for t in plan.offsets],
               state=list(states.values()), **(context or {}))
    names = {"model.h": "model.h.j2", "model.c": "model.c.j2", "weights.h": "weights.h.j2",
             "weights.c": "weights.c.j2", **(templates or {})}
    files = {f: env.get_template(t).render(**ctx) for f, t in names.items()}
    switches = env.globals["switches"]
    switches.need({"TE_UNPACK_EXCEPTIONS": any(        # safe to leave out only where no
        chanpack.has_exceptions(n.params["rq_packed"])  # table of the model lists any
        for n in graph.nodes if "rq_packed" in n.params)})
    return GeneratedModel(files, [KERNEL_DIR / k for k in kernel_files],
                          sum(c.nbytes for c in const_list), {t: ptr(t) for t in plan.offsets},
                          switches.unused(), {k: a.symbol for k, a in states.items()})


# params stored as int8_t fields of te_conv_args (firmware/kernels/te_conv_args.h); other
# integers must fit int16_t
_CONV_ARGS_INT8 = ("k_h", "k_w", "stride_h", "stride_w", "dil_h", "dil_w", "pad_top", "pad_left",
                   "rq_mode", "output_offset", "act_min", "act_max")


def _conv_args(cp, opdef, node, graph, idx: int, p: dict, consts: dict, scratch_base: str):
    """What a template needs to call a kernel through a te_conv_args struct
    (firmware/kernels/te_conv_args.h): the channel table's symbol (packed or not), the flags and
    the scratch; None where the node has no table (``cp``, its channel_params) or a value does
    not fit its field."""

    if cp is None:
        return None
    for key, value in node.params.items():
        if isinstance(value, (int, np.integer)):
            lo, hi = (-128, 127) if key in _CONV_ARGS_INT8 else (-32768, 32767)
            if not lo <= int(value) <= hi:
                return None
    packed = "rq_packed" in node.params
    if packed:
        channels = p["rq_packed"]
    else:
        channels = f"te_n{idx}_channels"
        consts[channels] = ConstArray(channels, "int32_t", chanpack.table(cp),
                                      c_comment(f"{node.name}: per-channel table"))
    flags = (1 if packed else 0) | (2 if opdef.scratch_bytes(node, graph) else 0)
    return {"channels": channels, "flags": flags, "scratch": scratch_base}


def _io(graph: Graph, name: str, expr: str) -> dict:
    t = graph.tensors[name]
    return {"name": c_string(name), "expr": expr, "bytes": t.nbytes,
            "dtype": DTYPE_CODES[t.dtype], "shape": t.shape}
