"""Graph passes.  Each pass is a function Graph -> Graph, listed in order by compiler.PASSES."""
from __future__ import annotations

from . import ops
from .ir import Graph


def check_ops(graph: Graph) -> Graph:
    """Every node must be an op TinyEngine supports, with attrs/dtypes/quantization it supports."""
    for node in graph.nodes:
        ops.get(node.op).check(node, graph)
    return graph


def remove_dead_nodes(graph: Graph) -> Graph:
    """Drop nodes whose outputs nothing reads (and that are not model outputs)."""
    needed = set(graph.outputs)
    keep = []
    for node in reversed(graph.nodes):
        if any(t in needed for t in node.outputs):
            keep.append(node)
            needed.update(t for t in node.inputs if t is not None)
    graph.nodes = list(reversed(keep))
    used = set(graph.inputs) | needed
    graph.tensors = {k: v for k, v in graph.tensors.items() if k in used}
    return graph


def prepare(graph: Graph, cache: dict | None = None) -> Graph:
    """Compute each node's compile-time kernel parameters into node.params.

    cache: a dict kept by a caller that compiles many graphs sharing layers (tinynas' cost
    model): params by node_key, a node found there gets a copy instead of being prepared again.
    It stays in ``graph.meta["prepared"]``, where regions.region_graph keeps the prepared
    params of the schedules' parts (patches, fused rows) as well."""
    if cache is not None:
        graph.meta["prepared"] = cache
    for node in graph.nodes:
        opdef = ops.get(node.op)
        if cache is None:
            node.params = opdef.prepare(node, graph)
            continue
        key = node_key(graph, node)
        if key not in cache:
            cache[key] = opdef.prepare(node, graph)
        node.params = dict(cache[key])     # the memory plan adds its grants to node.params
    return graph


def node_key(graph: Graph, node) -> tuple:
    """Everything a node's prepare() reads, as a hashable key: the target, the node's op, name
    and attrs, each of its tensors (shape, type, quantization, a digest of constant data) and
    its op's prepare_context (what it reads of the rest of the graph)."""
    import hashlib

    tensors = []
    for name in list(node.inputs) + list(node.outputs):
        t = graph.tensors[name] if name is not None else None
        if t is None:
            tensors.append(None)
            continue
        q = t.quant
        tensors.append((name, tuple(t.shape), t.dtype,
                        None if q is None else (q.scale.tobytes(), q.zero_point.tobytes(), q.axis),
                        hashlib.blake2b(t.data.tobytes(), digest_size=16).digest()
                        if t.data is not None else None))
    return (ops.target_of(graph), node.op, node.name, repr(sorted(node.attrs.items())),
            tuple(tensors), ops.get(node.op).prepare_context(node, graph))


FOLDABLE_PAD_CONSUMERS = ("CONV_2D", "DEPTHWISE_CONV_2D")


def fold_pad(graph: Graph) -> Graph:
    """Fold an explicit PAD / PADV2 of H and W into the conv / depthwise conv that reads it.

    The convolution kernels read ``pad_value`` (the input zero point) for taps outside the
    image, with ``pad_top`` / ``pad_left`` given and bottom / right implied by in_h / in_w.
    A PAD whose constant is that zero point, which leaves batch and channels alone and
    keeps its input's quantization, therefore becomes explicit padding
    ``(top, bottom, left, right)`` of its only consumer: the same taps read the same value,
    bit for bit, and the padded tensor is never stored.  Pools are not folded: TFLite's
    average pool leaves padding out of its count, which an explicit PAD does not.
    """
    from .ops.common import same_quant, window_geometry
    from .ops.conv import int_pair

    consumers = graph.consumers()
    producers = graph.producers()
    drop = set()
    for node in graph.nodes:
        if node.op not in FOLDABLE_PAD_CONSUMERS or node.inputs[0] not in producers:
            continue
        pad = producers[node.inputs[0]]
        if pad.op not in ("PAD", "PADV2") or pad.outputs[0] in graph.outputs:
            continue
        if len(consumers.get(pad.outputs[0], [])) != 1:
            continue
        x, xp = graph.tensors[pad.inputs[0]], graph.tensors[pad.outputs[0]]
        if len(x.shape) != 4 or x.quant is None or xp.quant is None or not same_quant(x, xp):
            continue
        opdef = ops.get(pad.op)
        pads = opdef._paddings(pad, graph)
        if pads.shape != (4, 2) or pads[0].any() or pads[3].any():
            continue
        if opdef._pad_value(pad, graph) != x.quant.zp:
            continue
        w = graph.tensors[node.inputs[1]]
        a = node.attrs
        stride, dil = int_pair(a.get("stride")), int_pair(a.get("dilation"))
        g = window_geometry(a.get("padding", "VALID"), xp.shape[1:3], w.shape[1:3], stride, dil)
        explicit = (int(pads[1, 0]) + g["pad_top"], int(pads[1, 1]) + g["pad_bottom"],
                    int(pads[2, 0]) + g["pad_left"], int(pads[2, 1]) + g["pad_right"])
        g2 = window_geometry(explicit, x.shape[1:3], w.shape[1:3], stride, dil)
        y = graph.tensors[node.outputs[0]]
        if (g2["out_h"], g2["out_w"]) != tuple(y.shape[1:3]):
            continue
        node.attrs = dict(a, padding=explicit)
        node.inputs = [pad.inputs[0]] + list(node.inputs[1:])
        drop.add(id(pad))
    if drop:
        graph.nodes = [n for n in graph.nodes if id(n) not in drop]
        used = set(graph.inputs) | set(graph.outputs)
        for n in graph.nodes:
            used.update(t for t in n.inputs + n.outputs if t is not None)
        graph.tensors = {k: v for k, v in graph.tensors.items() if k in used}
    return graph


MAX_SCHEDULE_STATES = 20000


def reorder_for_memory(graph: Graph) -> Graph:
    """Pick the topological order with the lowest peak of live activation bytes.

    On a chain there is one order; on branching graphs (a residual block with a conv on its
    shortcut, parallel branches before a CONCATENATION) running one branch before the other
    changes what is alive together.  The bytes alive after a set of executed nodes do not
    depend on the order they ran in, so the best order is a bottleneck shortest path over
    the sets of executed nodes that are closed under producers (dynamic programming, one
    layer of sets per number of executed nodes).  Graphs with more than
    MAX_SCHEDULE_STATES such sets keep their order.  Ties keep the original order.
    """
    nodes = graph.nodes
    n = len(nodes)
    if n < 3:
        return graph
    index = {id(nd): i for i, nd in enumerate(nodes)}
    producer = {t: i for i, nd in enumerate(nodes) for t in nd.outputs}
    preds = [0] * n
    for i, nd in enumerate(nodes):
        for t in nd.inputs:
            if t is not None and t in producer:
                preds[i] |= 1 << producer[t]
    act = [t for t in graph.activations()]
    size = {t: graph.tensors[t].nbytes for t in act}
    cons_mask = {t: 0 for t in act}
    for i, nd in enumerate(nodes):
        for t in nd.inputs:
            if t is not None and t in cons_mask:
                cons_mask[t] |= 1 << i
    outputs = set(graph.outputs)
    prod_bit = {t: (1 << producer[t]) if t in producer else 0 for t in act}

    def live(done: int) -> int:
        total = 0
        for t in act:
            pb = prod_bit[t]
            if pb and not done & pb:
                continue
            if t in outputs or cons_mask[t] & ~done:
                total += size[t]
        return total

    out_bytes = [sum(size.get(t, 0) for t in nd.outputs) for nd in nodes]
    layer = {0: (0, None, None)}      # done mask -> (bottleneck, parent mask, node)
    history = []
    for _ in range(n):
        nxt: dict = {}
        for done, (peak, _, _) in layer.items():
            base = live(done)
            for i in range(n):
                bit = 1 << i
                if done & bit or (preds[i] & ~done):
                    continue
                cost = max(peak, base + out_bytes[i])
                key = done | bit
                if key not in nxt or cost < nxt[key][0]:
                    nxt[key] = (cost, done, i)
        history.append(nxt)
        layer = nxt
        if sum(len(h) for h in history) > MAX_SCHEDULE_STATES:
            return graph
    order = []
    mask = (1 << n) - 1
    for h in reversed(history):
        _, parent, i = h[mask]
        order.append(nodes[i])
        mask = parent
    order.reverse()
    if [index[id(nd)] for nd in order] != list(range(n)):
        graph.nodes = order
    return graph
