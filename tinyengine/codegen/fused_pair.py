"""The C of a row-streamed expand -> depthwise pair (tinyengine/fusion.py decides the rows).

Renderer layer: one entry of codegen's call list per pair (codegen_templates/
fused_expand_dw.c.j2).  Consecutive rows whose C differs only in integer literals become one
loop: literals growing evenly are computed, the rest come from a small table of the
distinct rows (:func:`_affine_loop`).
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..fusion import Fusion, pair_channel_params
from ..ir import Graph
from ..ops import chanpack
from .emit import LITERAL, ConstArray, c_comment, param_symbols


# a literal column that follows v0 + d * te_ri except at a few rows (the border rows, usually)
# keeps only what those rows differ by in the table, and the table only its distinct rows,
# picked by a ternary per exceptional row (about 8 bytes of code each) where that is smaller
MAX_EXCEPTIONS = 3
EXCEPTION_BYTES = 8


def _line_with_exceptions(col: list) -> tuple:
    """(v0, d, exceptions): the line v0 + d * i through the most rows of ``col`` (slopes of
    consecutive rows tried, the flattest first on a tie) and the rows off it."""
    best = None
    for d in sorted({b - a for a, b in zip(col, col[1:])}, key=lambda d: (abs(d), d)):
        bases = [v - d * i for i, v in enumerate(col)]
        v0 = max(set(bases), key=lambda b: (bases.count(b), -abs(b)))
        off = [i for i, b in enumerate(bases) if b != v0]
        if best is None or len(off) < len(best[2]):
            best = (v0, d, off)
    return best


def _linear(ref: str | None, v0: int, d: int) -> str:
    """C of ref + v0 + d * te_ri (ref: a C expression or None)."""
    out = str(v0) if ref is None else ref if not v0 else f"{ref} {'+' if v0 > 0 else '-'} {abs(v0)}"
    if d:
        out += f" {'+' if d > 0 else '-'} {abs(d)} * te_ri"
    return out if out.replace("_", "").replace("[", "").replace("]", "").isalnum() else f"({out})"


def _ctype_bytes(values) -> int:
    return (1 if all(-128 <= v <= 127 for v in values) else
            2 if all(-32768 <= v <= 32767 for v in values) else 4)


def _row_index(rows: list, width: int) -> tuple:
    """(stored rows, C index of te_ri's row or None for te_ri): the table's distinct rows,
    picked by ternaries on the few rows that are not the common one, or all rows."""
    distinct = list(dict.fromkeys(rows))
    idx = [distinct.index(r) for r in rows]
    common = max(set(idx), key=idx.count)
    off = [i for i, k in enumerate(idx) if k != common]
    if len(off) <= MAX_EXCEPTIONS and \
            len(distinct) * width + EXCEPTION_BYTES * len(off) < len(rows) * width:
        expr = str(common)
        for i in reversed(off):
            expr = f"te_ri == {i} ? {idx[i]} : {expr}"
        return distinct, expr
    return rows, None


def _affine_loop(bodies: list) -> dict:
    """One loop body for C texts that differ only in integer literals: a literal that grows
    by the same step from row to row becomes ``(v0 + d * te_ri)``, the others come from a
    table ``a[]`` (a column equal to another plus a constant once) of the smallest integer
    type that holds them (Flash: a few bytes a row).  A column on such a line except at a
    few rows stores only its difference from the line, and where few rows differ from one
    common row the table holds just the distinct rows (the border rows usually differ)."""
    split = [LITERAL.split(b) for b in bodies]
    values = [[int(v) for v in parts[1::2]] for parts in split]
    cols = {}
    table = []
    for j in range(len(values[0])):
        col = [v[j] for v in values]
        if len(set(col)) == 1:
            continue
        v0, d, off = _line_with_exceptions(col)
        if not off:
            cols[j] = _linear(None, v0, d)
            continue
        if len(off) > MAX_EXCEPTIONS or d == 0:
            v0, d = 0, 0
        stored = [v - (v0 + d * i) for i, v in enumerate(col)]
        k = next((k for k, tc in enumerate(table)
                  if len({v - u for u, v in zip(tc, stored)}) == 1), None)
        if k is None:
            k = len(table)
            table.append(stored)
        cols[j] = _linear(f"a[{k}]", v0 + stored[0] - table[k][0], d)
    body = []
    for i, piece in enumerate(split[0]):
        body.append(piece if i % 2 == 0 else cols.get(i // 2, piece))
    flat = [v for col in table for v in col]
    size = _ctype_bytes(flat)
    rows, index = _row_index(list(zip(*table)), size * len(table)) if table else ([], None)
    return dict(body="".join(body), table=[list(r) for r in rows], k=len(table),
                ctype={1: "int8_t", 2: "int16_t", 4: "int32_t"}[size], index=index or "te_ri")


def render_pair(env, graph: Graph, plan, f: Fusion, consts: dict, const_of_tensor: dict,
           kernel_files: list) -> dict:
    """The C of a fused pair, as one entry of codegen's call list."""
    arena = "te_arena"
    ex, dw = graph.nodes[f.expand], graph.nodes[f.dw]
    x, y = ex.inputs[0], dw.outputs[0]
    ring = plan.offsets[f.tensor]
    xrow = graph.tensors[x].shape[2] * graph.tensors[x].shape[3]
    yrow = graph.tensors[y].shape[2] * graph.tensors[y].shape[3]

    def at(off, ctype="int8_t") -> str:
        return f"(({ctype} *)({arena} + {off}))"

    # bit-packed per-channel tables (memory.grant_compact_params): expanded once, before
    # the first row, at the start of the node's scratch, which lives over the whole pair
    # (a table that no one copy can serve stays unpacked in Flash)
    unpack, packed = [], set()
    for k in (f.expand, f.dw):
        node = graph.nodes[k]
        cp = pair_channel_params(graph, f, k) if "rq_packed" in node.params else None
        if cp is None:
            continue
        packed.add(k)
        sym = f"te_n{k}_rq_packed"
        consts[sym] = ConstArray(sym, "uint32_t", np.ascontiguousarray(node.params["rq_packed"]),
                                 c_comment(f"{node.name}: rq_packed"))
        unpack.append(env.get_template("unpack_channels.c.j2").render(
            packed=sym, n=cp.n, group=cp.group, table=at(plan.scratch[node.name][0])).rstrip())
        if "te_unpack_channels.c" not in kernel_files:
            kernel_files.append("te_unpack_channels.c")

    def call(k, sub, inp0, out0, scratch_bytes=None) -> str:
        node, orig = sub.nodes[0], graph.nodes[k]
        params = param_symbols(node, orig, k, consts)
        if scratch_bytes is not None:
            params["scratch_bytes"] = scratch_bytes
        opdef = ops.get(node.op)
        for kf in opdef.kernel_sources(node):
            if kf not in kernel_files:
                kernel_files.append(kf)
        inp = [inp0] + [None if t is None else const_of_tensor[t] for t in node.inputs[1:]]
        scratch = at(plan.scratch[orig.name][0]) if orig.name in plan.scratch else "NULL"
        if k in packed:     # the expanded table first, the kernel's scratch after
            cp = opdef.channel_params(orig)
            chanpack.bind(params, cp.names, cp.n, scratch)
            scratch = at(plan.scratch[orig.name][0] + int(orig.params["rq_table_bytes"]))
        return env.get_template(opdef.template_for(node)).render(
            node=node, p=params, inp=inp, out=[out0], scratch=scratch, same_buffer=False,
            tin=[sub.tensors[t] if t is not None else None for t in node.inputs],
            tout=[sub.tensors[t] for t in node.outputs]).rstrip()

    bodies = []
    for st in f.steps:
        expand = None
        if st.expand is not None:
            expand = call(f.expand, st.expand, at(plan.offsets[x] + st.new0 * xrow),
                          at(ring + st.pos * f.row_bytes))
        depthwise = call(f.dw, st.dw, at(ring + st.dw_pos * f.row_bytes),
                         at(plan.offsets[y] + st.oy * yrow), dw.params.get("scratch_bytes", 0))
        bodies.append(env.get_template("fused_expand_dw.c.j2").render(
            part="step", ring=at(ring), move_from=at(ring + f.move * f.row_bytes),
            move_bytes=(f.ring_rows - f.move) * f.row_bytes if f.move else 0, expand=expand,
            depthwise=depthwise).rstrip())
    prime = None
    if f.prime:
        prime = call(f.expand, f.prime_graph, at(plan.offsets[x] + f.prime[0] * xrow),
                     at(ring + f.prime[2] * f.row_bytes))
    runs = []          # consecutive rows whose C differs only in literals: one loop
    skeletons = [tuple(LITERAL.split(b)[0::2]) for b in bodies]
    start = 0
    while start < len(bodies):
        end = start + 1
        while end < len(bodies) and skeletons[end] == skeletons[start]:
            end += 1
        if end - start == 1:
            runs.append(dict(loop=False, body=bodies[start], first=start, n=1))
        else:
            runs.append(dict(loop=True, first=start, n=end - start, **_affine_loop(bodies[start:end])))
        start = end
    text = env.get_template("fused_expand_dw.c.j2").render(
        part="pair", runs=runs, rows=len(bodies), ring_rows=f.ring_rows, prime=prime,
        unpack=unpack, tensor=c_comment(f.tensor), expand_name=c_comment(ex.name))
    return {"index": f.dw, "node": dw, "body": text.rstrip(),
            "inputs": [c_comment(x)], "outputs": [c_comment(y)]}
