"""Segment-level overlap: how far an op's output may reach into its own input.

A layer-by-layer executor keeps an op's input and output apart; but most kernels read
their input and write their output in one streaming order, so the output can start
inside the input buffer as long as no byte is overwritten before its last read.  That
is only safe when the kernel promises the order, so every kernel that allows it says so
in its header, on a line the compiler reads (the C side of the contract)::

    TE_OVERLAP: window group=G
        Output pixels are written in increasing (batch, oy, ox) order, at most G consecutive
        output pixels at a time; once any byte of output pixel q is written, every input
        byte the kernel still reads belongs to the window of an output pixel >= q (the
        window of pixel p: rows oy*stride_h - pad_top + ky*dil_h, columns likewise, clipped
        to the image, every channel).  The output pixel's own window may be read after its
        first bytes are written (conv writes channel 0 before reading for channel 1).

    TE_OVERLAP: elementwise
        out[i] is written after in[i] is read, in increasing i, for every input; input and
        output elements have the same size.

A kernel whose header has no such line never overlaps (and every kernel of a node must
declare the same kind).  From the contract and the node's shapes, :func:`access` builds
the op's write/read order at pixel granularity, and :func:`max_delta` the largest ``D``
such that the output may start at ``input_offset + d`` for every ``d <= D`` (``D`` is
usually negative: the output starts ``-D`` bytes before its input and ends on top of it);
placements with no overlap at all stay allowed.  ``OpDef.overlap_bytes(node, graph)`` may
return the same quantity computed by the op itself; the planner takes the smaller of the
two (both must be safe).  tests/test_memory.py replays every plan through
:func:`simulate`, a byte-level check of the same contract.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import ops
from .regions import WINDOW_OPS

KERNEL_DIR = Path(__file__).resolve().parents[1] / "firmware" / "kernels"
_CONTRACT = re.compile(r"TE_OVERLAP:\s*(window|elementwise|no-activations)(?:\s+group=(\d+))?")


@lru_cache(maxsize=None)
def header_contract(kernel_c: str):
    """(kind, group) declared by a kernel's header, or None."""
    h = KERNEL_DIR / Path(kernel_c).with_suffix(".h").name
    if not h.is_file():
        return None
    m = _CONTRACT.search(h.read_text())
    if not m:
        return None
    return m.group(1), int(m.group(2) or 1)


def node_contract(node):
    """The overlap contract every kernel of this node declares, or None."""
    kinds = set()
    group = 1
    sources = list(ops.get(node.op).kernel_sources(node))
    if node.op in ("ADD", "MUL"):
        if not node.params.get("same"):
            return None       # the broadcast kernel walks strided indices: no overlap
        sources = [k for k in sources if "bcast" not in str(k)]
    elif node.op == "QUANTIZE":
        if node.params.get("kernel") != "te_requantize_s8":
            return None
        sources = ["te_requantize_s8.c"]
    if not sources:
        return None
    for k in sources:
        c = header_contract(str(k))
        if c is None:
            return None
        if c[0] == "no-activations":     # a helper that reads and writes only constants and scratch
            continue
        kinds.add(c[0])
        group = max(group, c[1])
    if len(kinds) != 1:
        return None
    return kinds.pop(), group


@dataclass
class Access:
    """Pixel-granular order of one (input, output) pair of a node.

    Step s writes output bytes [w_lo[s], w_hi[s]) and afterwards (and possibly just before)
    reads, among others, the input rows given by ``reads(s)`` -> list of (lo, hi) byte
    ranges.  ``r_min[s]`` is the lowest input byte read at or after step s's writes.
    """
    w_lo: np.ndarray
    w_hi: np.ndarray
    r_min: np.ndarray
    reads: object            # callable s -> list of (lo, hi)
    in_bytes: int
    out_bytes: int


def _window_access(node, graph, group: int) -> Access:
    p = node.params
    x = graph.tensor(node.inputs[0])
    y = graph.tensor(node.outputs[0])
    n, in_h, in_w, in_c = x.shape
    _, out_h, out_w, out_c = y.shape
    if node.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        kh, kw, sh, sw = p["k_h"], p["k_w"], p["stride_h"], p["stride_w"]
        dh, dw = p["dil_h"], p["dil_w"]
    else:
        kh, kw, sh, sw = p["filter_h"], p["filter_w"], p["stride_h"], p["stride_w"]
        dh = dw = 1
    pt, pl = p["pad_top"], p["pad_left"]
    b, oy, ox = np.meshgrid(np.arange(n), np.arange(out_h), np.arange(out_w), indexing="ij")
    b, oy, ox = b.ravel(), oy.ravel(), ox.ravel()
    iy0 = oy * sh - pt
    ix0 = ox * sw - pl
    # first in-bounds row / column of each window (clipping to 0 is a lower bound)
    ry = np.clip(iy0, 0, in_h - 1)
    rx = np.clip(ix0, 0, in_w - 1)
    win_min = ((b * in_h + ry) * in_w + rx) * in_c
    npix = b.size
    # groups of `group` consecutive pixels are written together after their windows are read
    gstart = np.arange(0, npix, group)
    gend = np.minimum(gstart + group, npix)
    suffix = np.minimum.accumulate(win_min[::-1])[::-1]
    w_lo = gstart * out_c
    w_hi = gend * out_c
    r_min = suffix[gstart]

    def reads(s):
        out = []
        for q in range(gstart[s], gend[s]):
            y0, x0 = iy0[q], ix0[q]
            ys = [y0 + k * dh for k in range(kh) if 0 <= y0 + k * dh < in_h]
            xs = [x0 + k * dw for k in range(kw) if 0 <= x0 + k * dw < in_w]
            if not ys or not xs:
                continue
            for yy in ys:
                row = (b[q] * in_h + yy) * in_w
                out.append(((row + xs[0]) * in_c, (row + xs[-1] + 1) * in_c))
        return out

    return Access(w_lo, w_hi, r_min, reads, x.nbytes, y.nbytes)


def _elementwise_access(node, graph, index: int) -> Access | None:
    x = graph.tensor(node.inputs[index])
    y = graph.tensor(node.outputs[0])
    if x.size != y.size or x.itemsize != y.itemsize:
        return None
    n, isz = y.size, y.itemsize
    # step i: read in[i] (before the write), write out[i]; later reads start at in[i + 1]
    steps = np.arange(n)
    return Access(steps * isz, (steps + 1) * isz, (steps + 1) * isz,
                  lambda s: [(s * isz, (s + 1) * isz)], x.nbytes, y.nbytes)


def access(node, graph, index: int = 0) -> Access | None:
    """The read/write order of input `index` -> output 0 of `node`, or None (no contract)."""
    if len(node.outputs) != 1 or index >= len(node.inputs) or node.inputs[index] is None:
        return None
    if graph.tensor(node.inputs[index]).is_const:
        return None
    c = node_contract(node)
    if c is None:
        return None
    kind, group = c
    if kind == "window" and node.op in WINDOW_OPS and index == 0:
        return _window_access(node, graph, group)
    if kind == "elementwise":
        return _elementwise_access(node, graph, index)
    return None


def max_delta(node, graph, index: int = 0):
    """Largest D such that output 0 may start at (input `index` start + d) for all d <= D.

    None when the node allows no overlap.  Writes landing past the input's end never
    matter, so D never exceeds the input size.
    """
    a = access(node, graph, index)
    own = None
    if a is not None:
        own = int(min(np.min(a.r_min - a.w_hi), a.in_bytes))
    opdef = ops.get(node.op)
    other = getattr(opdef, "overlap_bytes", None)
    theirs = other(node, graph) if other is not None and index == 0 else None
    if own is None:
        return None  # only ops whose kernels declare the contract may overlap
    return own if theirs is None else min(own, int(theirs))


def simulate(graph, plan) -> None:
    """Replay a memory plan byte by byte and raise AssertionError on any clobbered read.

    Every buffer (tensor, scratch) gets a tag in a byte map of the arena.  Each node checks
    that its inputs still carry their tags, then writes its output: in the declared pixel /
    element order for nodes that overlap their input (reads of each step checked right
    after the step's writes, as the contract allows), all at once otherwise.  A fused
    expand -> depthwise pair (tinyengine/fusion.py) writes its ring and both nodes' scratch
    (which may hold expanded per-channel tables) at the expand node; at the depthwise node
    the expand conv's input, the ring and the pair's scratch must all still be intact after
    the output is written (they are read until the last row).
    """
    tags = np.full(max(plan.arena_bytes, 1), -1, dtype=np.int64)
    tid: dict = {}
    ring = {f.tensor: f.ring_bytes for f in getattr(plan, "fusions", [])}
    pair_of_dw = {f.dw: f for f in getattr(plan, "fusions", [])}
    pair_of_ex = {f.expand: f for f in getattr(plan, "fusions", [])}

    def tag(name):
        root = plan.aliases.get(name, name)
        return tid.setdefault(root, len(tid))

    def rng(name):
        return plan.offsets[name], plan.offsets[name] + ring.get(name, graph.tensors[name].nbytes)

    for t in graph.inputs:
        lo, hi = rng(t)
        tags[lo:hi] = tag(t)
    for i, node in enumerate(graph.nodes):
        ins = [t for t in node.inputs if t is not None and not graph.tensors[t].is_const]
        for t in ins:
            lo, hi = rng(t)
            if not np.all(tags[lo:hi] == tag(t)):
                raise AssertionError(f"node {i} '{node.name}': input '{t}' was overwritten "
                                     "before this node reads it")
        # a fused pair's scratch (both nodes') is written before its first row: at the expand
        mine = [] if i in pair_of_dw else [node]
        if i in pair_of_ex:
            mine.append(graph.nodes[pair_of_ex[i].dw])
        for n in mine:
            if n.name not in plan.scratch:
                continue
            so, sb = plan.scratch[n.name]
            tags[so:so + sb] = tag(f"scratch:{n.name}")
            for t in ins:
                lo, hi = rng(t)
                if not np.all(tags[lo:hi] == tag(t)):
                    raise AssertionError(f"node {i} '{node.name}': scratch overlaps input '{t}'")
        out = node.outputs[0]
        o_lo, o_hi = rng(out)
        overlapping = [t for t in ins
                       if plan.aliases.get(t, t) != plan.aliases.get(out, out)
                       and rng(t)[0] < o_hi and o_lo < rng(t)[1]]
        if overlapping:
            for t in overlapping:
                idx = node.inputs.index(t)
                a = access(node, graph, idx)
                if a is None:
                    raise AssertionError(f"node {i} '{node.name}': output overlaps input '{t}' "
                                         "but its kernel declares no overlap contract")
            accs = {t: access(node, graph, node.inputs.index(t)) for t in ins}
            first = accs[overlapping[0]]
            for s in range(first.w_lo.size):
                tags[o_lo + first.w_lo[s]:o_lo + first.w_hi[s]] = tag(out)
                for t in ins:
                    a = accs.get(t)
                    base = rng(t)[0]
                    spans = a.reads(s) if a is not None else []
                    for lo, hi in spans:
                        if not np.all(tags[base + lo:base + hi] == tag(t)):
                            raise AssertionError(
                                f"node {i} '{node.name}': step {s} reads bytes {lo}..{hi} of "
                                f"'{t}' after the output overwrote them")
        else:
            tags[o_lo:o_hi] = tag(out)
        root_out = plan.aliases.get(out, out)
        for t in ins:
            if t in overlapping or plan.aliases.get(t, t) == root_out:
                continue
            lo, hi = rng(t)
            if not np.all(tags[lo:hi] == tag(t)):
                raise AssertionError(f"node {i} '{node.name}': output '{out}' overwrites input "
                                     f"'{t}' it may not overlap")
        for t in node.outputs[1:]:
            lo, hi = rng(t)
            tags[lo:hi] = tag(t)
        f = pair_of_dw.get(i)
        if f is not None:
            ex = graph.nodes[f.expand]
            held = [(t, *rng(t)) for t in (ex.inputs[0], f.tensor)]
            held += [(f"scratch:{n.name}", plan.scratch[n.name][0], sum(plan.scratch[n.name]))
                     for n in (ex, node) if n.name in plan.scratch]
            for name, lo, hi in held:
                if not np.all(tags[lo:hi] == tag(name)):
                    raise AssertionError(f"fused nodes {f.expand}-{i}: '{name}' is overwritten "
                                         "while the pair still runs")
