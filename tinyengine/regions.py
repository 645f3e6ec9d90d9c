"""Region arithmetic shared by the schedules that run ops on parts of their tensors.

Schedule layer (below patching.py and fusion.py, which decide *what* runs on which part;
above the ops, whose prepare() computes each part's kernel parameters).  A patch of a
patch-based stage (tinyengine/patching.py) and a row band of a fused expand -> depthwise
pair (tinyengine/fusion.py) are the same thing: the model's nodes re-derived on a
:class:`Region` of their NHWC tensors (:func:`region_graph`).

* the region of a window op's input is the rows / columns its output region reads, clipped
  to the image: ``[max(0, y0*s - pad_top), min(in_h, (y1-1)*s - pad_top + eff_h))``
  (:func:`input_region`);
* the part's padding is explicit: ``pad_top`` only where the region touches the image's
  top border (likewise left), bottom / right only where the region ends at the image's
  bottom / right border: the kernels read ``pad_value`` past ``in_h`` / ``in_w`` of the
  region, which then is the real border (average pools count only in-bounds pixels, the
  same);
* prepare() of the op on the part-sized tensors computes the kernel parameters, so the
  part runs the very kernel the whole tensor would, on a sub-problem.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import ops
from .errors import PatchError
from .ir import Graph, Node, Tensor
from .passes import node_key

WINDOW_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D")


@dataclass(frozen=True)
class Region:
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def h(self) -> int:
        return self.y1 - self.y0

    @property
    def w(self) -> int:
        return self.x1 - self.x0


def window(node) -> tuple:
    """(k_h, k_w, stride_h, stride_w, dil_h, dil_w, pad_top, pad_left) of a prepared node."""
    p = node.params
    if node.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        return (p["k_h"], p["k_w"], p["stride_h"], p["stride_w"], p["dil_h"], p["dil_w"],
                p["pad_top"], p["pad_left"])
    return (p["filter_h"], p["filter_w"], p["stride_h"], p["stride_w"], 1, 1,
            p["pad_top"], p["pad_left"])


def input_region(node, graph, r: Region) -> Region:
    """The region of node's input 0 that its output region ``r`` reads (module docstring);
    ``r`` itself for an op that reads pixel for pixel."""
    if node.op not in WINDOW_OPS:
        return r
    kh, kw, sh, sw, dh, dw, pt, pl = window(node)
    _, in_h, in_w, _ = graph.tensors[node.inputs[0]].shape
    return Region(max(0, r.y0 * sh - pt), min(in_h, (r.y1 - 1) * sh - pt + (kh - 1) * dh + 1),
                  max(0, r.x0 * sw - pl), min(in_w, (r.x1 - 1) * sw - pl + (kw - 1) * dw + 1))


def region_graph(graph: Graph, nodes: list, regions: dict, inputs: list, outputs: list) -> Graph:
    """``nodes`` re-derived on the region-sized tensors of ``regions`` (tensor -> Region):
    window ops get the explicit padding of their region (module docstring) and every node
    is prepared on its sub-problem (cached in ``graph.meta``; also across graphs in the dict
    given to run_passes as ``prepared``, by the original node's passes.node_key).  PatchError where a region's
    node cannot run.  The patches of a patch stage and the row bands of a fused pair are
    such graphs."""
    tensors = {}
    for name, r in regions.items():
        t = graph.tensors[name]
        tensors[name] = Tensor(name, (1, r.h, r.w, t.shape[3]), t.dtype, t.quant)
    new_nodes = []
    for node in nodes:
        for t in node.inputs:
            if t is not None and graph.tensors[t].is_const:
                tensors[t] = graph.tensors[t]
        attrs = dict(node.attrs)
        if node.op in WINDOW_OPS:
            kh, kw, sh, sw, dh, dw, pt, pl = window(node)
            r_out, r_in = regions[node.outputs[0]], regions[node.inputs[0]]
            top = r_in.y0 - (r_out.y0 * sh - pt)
            left = r_in.x0 - (r_out.x0 * sw - pl)
            bottom = max(0, (r_out.h - 1) * sh + (kh - 1) * dh + 1 - r_in.h - top)
            right = max(0, (r_out.w - 1) * sw + (kw - 1) * dw + 1 - r_in.w - left)
            attrs["padding"] = (top, bottom, left, right)
        new_nodes.append(Node(node.op, node.name, list(node.inputs), list(node.outputs), attrs))
    g = Graph(tensors, new_nodes, list(inputs), list(outputs), name=graph.name, meta=graph.meta)
    cache = graph.meta.setdefault("patch_prepare_cache", {})
    shared = graph.meta.get("prepared")      # run_passes(prepared=...): kept across graphs
    for n, orig in zip(new_nodes, nodes):
        key = (orig.name, tuple(tuple(g.tensors[t].shape) for t in n.inputs + n.outputs
                               if t is not None and not g.tensors[t].is_const),
               repr(n.attrs.get("padding")))
        if key not in cache:
            across = None if shared is None else ("region", node_key(graph, orig)) + key[1:]
            if across is not None and across in shared:
                cache[key] = dict(shared[across])
            else:
                opdef = ops.get(n.op)
                try:
                    opdef.check(n, g)
                    cache[key] = opdef.prepare(n, g)
                except ops.UnsupportedError as e:
                    raise PatchError(f"a patch of node '{n.name}' cannot run: {e}") from None
                if across is not None:
                    shared[across] = dict(cache[key])
        n.params = cache[key]
    return g
