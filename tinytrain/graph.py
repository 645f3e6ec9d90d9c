"""The training graph: the int8 forward as tinyengine runs it, a new classifier head, the
softmax cross-entropy loss and the backward, pruned to a scheme, as one tinyengine IR graph.

1. forward: te.load_model, te.set_target, the head replaced (replace_head), te.run_passes.
2. autodiff: from the loss backwards over the forward IR with tinytrain.grad_rules, keeping
   only the nodes on a path from the loss to a trained parameter: no input gradient below
   the earliest trained layer, no weight gradient of a frozen layer, only the selected
   channels' rows.  Each SGD update follows its gradient at once (the paper's operator
   reordering: the gradient buffer dies there).  Backward nodes are tinytrain.ops OpDefs.

Tensor names in the backward: grad:<tensor> (the gradient of a forward tensor's real value),
grad:<node>:<slot> (a node's own: preact, weights, bias, an input's contribution),
mask:<node> (1-bit clamp mask), <tensor>.scale / .zero_point / .qas (constants),
velocity:<param> (momentum state), loss, label.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import tinyengine as te

from . import grad_rules as gr
from . import ops as bops
from .scheme import TRAINABLE_OPS, Scheme, Targets, resolve

LOGIT_SCALE = 1.0 / 16     # the new head's int8 logits: real range [-8, 7.94], zero point 0
HEAD = "head"


class TrainGraphError(ValueError):
    """A model that cannot be trained (names the node and op)."""


@dataclass
class TrainingGraph:
    graph: object                       # te.Graph: forward, loss, backward, updates
    forward: object                     # te.Graph: the forward with the new head
    targets: dict                       # layer name -> scheme.Targets
    params: dict = field(default_factory=dict)      # param tensor -> (node, slot, channels)
    velocities: list = field(default_factory=list)  # momentum buffers (tensor names)
    grads: dict = field(default_factory=dict)       # param tensor -> its gradient tensor

    def param_bytes(self) -> int:
        """SRAM of the trained parameters (whole tensors, in their int8 / int32 form) and of
        each trained layer's acc_init (its forward kernel's accumulator start, int32 per
        channel, refolded after the layer's updates: tinytrain/firmware.py), or its depthwise
        DSP kernel's rq table (table_key)."""
        acc = sum(n.params[table_key(n)].nbytes for n in self.graph.nodes
                  if n.name in self.targets)
        return sum(self.graph.tensors[t].nbytes for t in self.params) + acc

    def state_bytes(self) -> int:
        """SRAM of the optimizer state (momentum buffers)."""
        return sum(self.graph.tensors[t].nbytes for t in self.velocities)


# -- forward and head ---------------------------------------------------------------------------
TAIL_POOLS = ("MEAN", "AVERAGE_POOL_2D")      # pool a head's map of logits: kept, for N classes
TAIL_DROPPED = ("RESHAPE", "TRANSPOSE", "SOFTMAX", "LOG_SOFTMAX", "LOGISTIC", "QUANTIZE",
                "DEQUANTIZE")                  # after the logits: they only reshape or normalize


def _per_sample(shape) -> bool:
    """A tensor holds one vector (the last axis) per sample (the first axis)."""
    return int(np.prod(shape[1:-1], dtype=np.int64)) == 1 if len(shape) > 1 else False


def find_head(graph) -> tuple:
    """(index of the classifier head, the pooling nodes after it to keep).

    The head is the last FULLY_CONNECTED or 1x1 CONV_2D; after it, along the chain from its output
    to the model's one output, come only ops that pool its map of logits to one vector per
    sample (MEAN, AVERAGE_POOL_2D: kept) and then ops that reshape or normalize the logits
    (TAIL_DROPPED: dropped; softmax cross-entropy takes the logits).  A 1x1 CONV_2D head may
    give a map (pooled after it, as SqueezeNet does); any other shape is refused, naming the
    node and op."""
    idx = [i for i, n in enumerate(graph.nodes) if n.op in TRAINABLE_OPS]
    label = graph.meta.get("source") or graph.name
    if not idx:
        raise TrainGraphError(f"{label}: no classifier head to replace: no FULLY_CONNECTED or "
                              f"1x1 CONV_2D node (ops: "
                              f"{', '.join(sorted({n.op for n in graph.nodes}))})")
    if len(graph.outputs) != 1:
        raise TrainGraphError(f"{label}: no classifier head to replace: {len(graph.outputs)} "
                              f"outputs (a classifier has one, its logits)")
    i = idx[-1]
    old = graph.nodes[i]
    w = graph.tensors[old.inputs[1]]
    what = f"node '{old.name}' ({old.op})"
    if old.op == "DEPTHWISE_CONV_2D" or (old.op == "CONV_2D" and tuple(w.shape[1:3]) != (1, 1)):
        raise TrainGraphError(f"{label}: no classifier head to replace: the last layer with "
                              f"weights, {what} with {list(w.shape)} weights, is neither a "
                              f"FULLY_CONNECTED nor a 1x1 CONV_2D")
    cur, pools, dropping = old.outputs[0], [], False
    tail = (f"after a head come only {' / '.join(TAIL_POOLS)} over the positions of a map of "
            f"logits, then {' / '.join(TAIL_DROPPED)} of one vector per sample")
    for j, node in enumerate(graph.nodes[i + 1:], i + 1):
        acts = [t for t in node.inputs if t is not None and not graph.tensors[t].is_const]
        x, y = graph.tensors[cur], graph.tensors[node.outputs[0]]
        if acts != [cur] or node.inputs[0] != cur:
            raise TrainGraphError(f"{label}: no classifier head to replace: node '{node.name}' "
                                  f"({node.op}) comes after the last layer with weights {what} "
                                  f"and does not take its output alone ({tail})")
        if node.op in TAIL_POOLS and not dropping and not _per_sample(x.shape) \
                and y.shape[0] == x.shape[0] and y.shape[-1] == x.shape[-1]:
            pools.append(j)
        elif node.op in TAIL_DROPPED and (dropping or _per_sample(x.shape)):
            dropping = True
        else:
            raise TrainGraphError(f"{label}: no classifier head to replace: node '{node.name}' "
                                  f"({node.op}) on {list(x.shape)} comes after the last layer "
                                  f"with weights {what} ({tail})")
        cur = node.outputs[0]
    if cur not in graph.outputs:
        raise TrainGraphError(f"{label}: no classifier head to replace: the output of the last "
                              f"layer with weights, {what}, is not the model's output "
                              f"'{graph.outputs[0]}'")
    last = graph.nodes[pools[-1]] if pools else old
    if not _per_sample(graph.tensors[last.outputs[0]].shape):
        raise TrainGraphError(f"{label}: no classifier head to replace: the last layer with "
                              f"weights, {what}, gives "
                              f"{list(graph.tensors[last.outputs[0]].shape)} values, not one "
                              f"vector of logits per sample ({tail})")
    return i, pools


def replace_head(graph, classes: int, seed: int = 0):
    """The graph with its classifier head (find_head: the last FULLY_CONNECTED or 1x1 CONV_2D)
    replaced by one for `classes` classes; the pooling of a map of logits after it kept for the
    new classes, the nodes after the logits (softmax, dequantize, reshape) dropped.

    New weights: uniform in +-1/sqrt(fan_in) (PyTorch's nn.Linear init), seeded, quantized per
    output channel with scale 2 * max|w_c| / 127 (half the int8 range, room to grow in
    training); bias 0 (int32, scale s_x * s_w[c]); logits (and a pooled map of them) int8 with
    scale LOGIT_SCALE, zero point 0."""
    if not isinstance(classes, int) or classes < 2:
        raise TrainGraphError(f"--classes must be an integer >= 2, got {classes!r}")
    i, pools = find_head(graph)
    old = graph.nodes[i]
    x = graph.tensors[old.inputs[0]]
    w_old = graph.tensors[old.inputs[1]]
    fan_in = int(np.prod(w_old.shape[1:]))
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(fan_in)
    w = rng.uniform(-bound, bound, size=(classes, fan_in))
    scale = 2 * np.abs(w).max(axis=1) / 127
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    wshape = (classes,) + tuple(w_old.shape[1:])
    tensors = {t: v for t, v in graph.tensors.items()}

    def logits(name, like):
        shape = tuple(graph.tensors[like].shape[:-1]) + (classes,)
        tensors[name] = te.Tensor(name, shape, "int8", te.QuantParams([LOGIT_SCALE], [0]))
        return name

    tensors[f"{HEAD}/weights"] = te.Tensor(f"{HEAD}/weights", wshape, "int8",
                                           te.QuantParams(scale, np.zeros(classes), 0),
                                           q.reshape(wshape))
    bscale = scale * x.quant.s
    tensors[f"{HEAD}/bias"] = te.Tensor(f"{HEAD}/bias", (classes,), "int32",
                                        te.QuantParams(bscale, np.zeros(classes), 0),
                                        np.zeros(classes, np.int32))
    outs = [logits(f"{HEAD}/logits" if not pools else f"{HEAD}/map", old.outputs[0])]
    nodes = graph.nodes[:i] + [te.Node(old.op, HEAD, [old.inputs[0], f"{HEAD}/weights",
                                                      f"{HEAD}/bias"],
                                       [outs[0]], {**old.attrs, "activation": "NONE"})]
    for k, j in enumerate(pools):           # the pooling of the map, for the new classes
        pool = graph.nodes[j]
        outs.append(logits(f"{HEAD}/logits" if k == len(pools) - 1 else f"{HEAD}/map{k + 1}",
                           pool.outputs[0]))
        nodes.append(te.Node(pool.op, pool.name, [outs[-2]] + list(pool.inputs[1:]), [outs[-1]],
                             dict(pool.attrs)))
    used = {t for n in nodes for t in n.inputs + n.outputs if t is not None} | set(graph.inputs)
    tensors = {k: v for k, v in tensors.items() if k in used}
    return te.Graph(tensors, nodes, list(graph.inputs), [f"{HEAD}/logits"], graph.name,
                    dict(graph.meta))


def forward_graph(model, board: str, classes: int, seed: int = 0, options=None):
    """The forward with the new head, as tinyengine runs it on `board`."""
    opts = options or te.CompileOptions(board=board)
    g = te.load_model(model, opts)
    g = te.set_target(g, board)
    return te.run_passes(replace_head(g, classes, seed), opts)


FAST_KERNELS = ("te_depthwise_conv_2d_s8_dsp", "te_conv_2d_1x1_s8_dsp", "te_conv_2d_s8_dsp")


def trained_params(node, fwd, target) -> dict:
    """A trained layer's forward params.  A conv or depthwise layer whose bias alone trains
    keeps its board's DSP kernel where it has one, prepared for a bias that changes at run
    time (te.ACC_INIT_VARIES: tables valid for any accumulator below 2^30, no
    bias-dependent folds; the firmware writes each updated bias into the table, FOLD_BIAS);
    every other trained layer runs its portable kernel (portable_params)."""
    if target.channels is None and node.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        fast = te.Node(node.op, node.name, list(node.inputs), list(node.outputs),
                       {**node.attrs, te.ACC_INIT_VARIES: True})
        p = te.get_op(node.op).prepare(fast, fwd)
        if p.get("kernel") in FAST_KERNELS:
            return p
    return portable_params(node, fwd)


def table_key(node) -> str:
    """The params array a trained layer's forward reads its bias from (the firmware's state):
    the depthwise DSP kernel's rq table, else acc_init."""
    return "rq" if node.params.get("kernel") == "te_depthwise_conv_2d_s8_dsp" else "acc_init"


def portable_params(node, fwd) -> dict:
    """A trained layer's params for its portable kernel (prepared for the host's Target,
    whatever the board): plain weights and an acc_init array (bias + input offset * sum of
    weights, per channel), which the firmware keeps in SRAM and refolds after each update;
    the DSP kernels' packed weights and channel tables are compile-time constants."""
    host = te.Graph(fwd.tensors, fwd.nodes, list(fwd.inputs), list(fwd.outputs), fwd.name,
                    {**fwd.meta, "target": te.Target()})
    return te.get_op(node.op).prepare(node, host)


# -- the gradient rules' view of a forward node ---------------------------------------------------
def _slots(node) -> dict:
    if node.op in TRAINABLE_OPS:
        names = ("input", "weights", "bias")
    elif node.op == "ADD":
        names = ("input1", "input2")
    else:
        names = ("input",)
    s = {k: t for k, t in zip(names, node.inputs) if t is not None}
    s["output"] = node.outputs[0]
    return s


def _window_padding(p) -> tuple:
    """Explicit (top, bottom, left, right) of a prepared window op."""
    kh, kw = p.get("k_h", p.get("filter_h")), p.get("k_w", p.get("filter_w"))
    bottom = max(0, (p["out_h"] - 1) * p["stride_h"] + kh - p["in_h"] - p["pad_top"])
    right = max(0, (p["out_w"] - 1) * p["stride_w"] + kw - p["in_w"] - p["pad_left"])
    return (p["pad_top"], bottom, p["pad_left"], right)


def op_spec(node, graph) -> gr.OpSpec:
    """grad_rules.OpSpec of a prepared forward node."""
    p = node.params
    slots = _slots(node)
    shapes = {k: graph.tensors[t].shape for k, t in slots.items()}
    attrs = {k: p[k] for k in ("act_min", "act_max", "stride_h", "stride_w") if k in p}
    if node.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        attrs.update(padding=_window_padding(p), dilation_h_factor=p["dil_h"],
                     dilation_w_factor=p["dil_w"])
    elif node.op == "AVERAGE_POOL_2D":
        p = dict(p, in_h=p["in_h"], k_h=p["filter_h"], k_w=p["filter_w"])
        attrs.update(padding=_window_padding(p), filter_height=p["filter_h"],
                     filter_width=p["filter_w"])
    elif node.op == "MEAN":
        attrs["axes"] = tuple(int(a) for a in np.asarray(graph.tensors[node.inputs[1]].data).ravel())
    elif node.op == "TRANSPOSE":
        attrs["perm"] = tuple(int(a) for a in np.asarray(graph.tensors[node.inputs[1]].data).ravel())
    elif node.op == "PAD":
        attrs["pad_before"] = tuple(int(a) for a in
                                    np.asarray(graph.tensors[node.inputs[1]].data).reshape(-1, 2)[:, 0])
    rule = gr.GRAD_RULES.get(node.op)
    if rule is not None and rule.clamps and "act_min" not in attrs:
        attrs.update(act_min=-128, act_max=127)       # an int8 output without a fused activation
    return gr.OpSpec(node.op, attrs, shapes)


# -- autodiff ----------------------------------------------------------------------------------
class _Builder:
    def __init__(self, fwd):
        self.tensors = dict(fwd.tensors)
        self.params, self.velocities, self.grads = {}, [], {}
        self.count = 0                   # backward nodes so far (unique node names)

    def add(self, name, shape, dtype, data=None):
        if name not in self.tensors:
            self.tensors[name] = te.Tensor(name, shape, dtype, data=data)
        return name

    def const_of(self, node, slot_tensor: str, what: str, slot: str):
        """<tensor>.scale / .zero_point / .qas as a constant tensor."""
        t = self.tensors[slot_tensor]
        name = f"{slot_tensor}.{what}"
        if what == "scale" and slot == "weights":     # per channel, even where per tensor
            s = _channel_scales(node, t)
            return self.add(name, s.shape, "float32", s.astype(np.float32))
        if what == "scale":
            return self.add(name, (1,), "float32", np.array([t.quant.s], np.float32))
        if what == "zero_point":
            return self.add(name, (1,), "int32", np.array([t.quant.zp], np.int32))
        w = self.tensors[node.inputs[1]]
        x = self.tensors[node.inputs[0]]
        with np.errstate(over="ignore", divide="ignore"):
            f = gr.qas_factors(slot, _channel_scales(node, w), x.quant.s)
        if not (np.isfinite(f).all() and (f > 0).all()):
            raise TrainGraphError(
                f"node '{node.name}' ({node.op}): its {slot} scales (weights "
                f"{np.min(_channel_scales(node, w)):.3g}..{np.max(_channel_scales(node, w)):.3g}, "
                f"input {x.quant.s:.3g}) give quantization-aware scaling factors 1/s^2 outside "
                f"float32; train without QAS (--no-qas) or leave the layer frozen")
        return self.add(f"{slot_tensor}.qas", f.shape, "float32", f)

    def nodes_of(self, node, steps, names, shapes):
        """IR nodes of a rule's steps; names: local value -> tensor (extended as written)."""
        out = []
        for step in steps:
            reads = [None if r is None else names(r) for r in step.reads]
            if step.kernel == gr.ALIAS:
                names.alias(step.writes[0], reads[0])
                continue
            writes, updates = [], []
            for w in step.writes:
                if w is None:
                    continue
                if step.kernel in bops.UPDATE_KERNELS:
                    updates.append(names(w))
                    continue
                shape, dtype = shapes(w)
                writes.append(self.add(names(w), shape, dtype))
            scalars = [i for i, r in enumerate(step.reads)
                       if r in ("input.scale", "input.zero_point")]
            self.count += 1
            out.append(te.Node(bops.op_name(step.kernel), f"{node.name}/{step.kernel}_{self.count}",
                               reads, writes, {"kernel": step.kernel, "args": dict(step.args),
                                               "scalars": scalars, "updates": updates}))
        return out


def _channel_scales(node, w) -> np.ndarray:
    """A weight tensor's scale per output channel (a per-tensor scale repeated)."""
    n = w.shape[-1] if node.op == "DEPTHWISE_CONV_2D" else w.shape[0]
    return np.broadcast_to(np.asarray(w.quant.scale, np.float64), (n,)).copy()


class _Names:
    """Local value names of one node's rule -> training-graph tensor names."""

    def __init__(self, builder, node, slots, grad_out):
        self.b, self.node, self.slots, self.grad_out = builder, node, slots, grad_out
        self.local = {"grad:output": grad_out}

    def alias(self, local, tensor):
        self.local[local] = tensor

    def __call__(self, v):
        if v in self.local:
            return self.local[v]
        n = self.node.name
        if v.startswith("grad:"):
            return self.local.setdefault(v, f"grad:{n}:{v[5:]}")
        if v.startswith("mask:"):
            return f"mask:{n}"
        if v.startswith("saved:"):
            return self.slots[v[6:]]
        if v.startswith("velocity:"):
            name = f"velocity:{self.slots[v[9:]]}"
            p = self.b.tensors[self.slots[v[9:]]]
            if name not in self.b.velocities:
                self.b.velocities.append(name)
                self.b.add(name, self.b.params[p.name][3], "float32",
                           np.zeros(self.b.params[p.name][3], np.float32))
            return name
        if "." in v:
            slot, what = v.split(".", 1)
            return self.b.const_of(self.node, self.slots[slot], what, slot)
        return self.slots[v]


def _value_shape(b, node, slots, targets_sel):
    def shapes(v):
        if v.startswith("mask:"):
            return (-(-b.tensors[slots["output"]].size // 8),), "uint8"
        slot = v[5:]
        if slot == "preact":
            return b.tensors[slots["output"]].shape, "float32"
        t = b.tensors[slots[slot]]
        if slot == "weights" and targets_sel is not None:
            shape = list(t.shape)
            shape[-1 if node.op == "DEPTHWISE_CONV_2D" else 0] = len(targets_sel)
            return tuple(shape), "float32"
        return t.shape, "float32"
    return shapes


def _check_not_shared(fwd, targets: dict) -> None:
    """A trained parameter read by one node only: a weight or bias tensor that several layers
    share (weight tying) would get one update per reader, each with its own QAS factor."""
    readers: dict = {}
    for node in fwd.nodes:
        for t in node.inputs[1:]:
            if t is not None and fwd.tensors[t].is_const:
                readers.setdefault(t, []).append(node.name)
    for node in fwd.nodes:
        tg = targets.get(node.name)
        if tg is None:
            continue
        slots = _slots(node)
        for slot, trained in (("weights", tg.channels is not None), ("bias", tg.bias)):
            others = [n for n in readers.get(slots.get(slot), []) if n != node.name]
            if trained and others:
                raise TrainGraphError(
                    f"node '{node.name}' ({node.op}): {slot} '{slots[slot]}' is shared with node "
                    f"'{others[0]}'; a shared parameter cannot be trained (train only layers "
                    f"after both, or neither's {slot})")


def build(fwd, scheme: Scheme, *, lr: float = 0.01, momentum: float = 0.0, qas: bool = True
          ) -> TrainingGraph:
    """The training graph of a forward graph (from forward_graph) under a scheme.  Its forward
    nodes are copies (te.plan_memory writes a node's params: each graph is planned once)."""
    head = fwd.nodes[find_head(fwd)[0]]       # the new head (its pooling may follow)
    targets = resolve(scheme, fwd, head.name)
    _check_not_shared(fwd, targets)
    # which forward nodes the backward visits: those with a target, and those whose input
    # carries a gradient to one
    relevant, need = set(), set()         # node names; tensors whose gradient is needed
    for node in fwd.nodes:
        acts = [t for t in node.inputs if t is not None and not fwd.tensors[t].is_const]
        if node.name in targets or any(t in need for t in acts):
            relevant.add(node.name)
            need.add(node.outputs[0])
    earliest = next((n for n in fwd.nodes if n.name in targets), head)
    b = _Builder(fwd)
    backwards = {}
    for node in fwd.nodes:
        if node.name not in relevant:
            continue
        if node.op not in gr.GRAD_RULES:
            raise TrainGraphError(
                f"node '{node.name}' ({node.op}) lies between the loss and trained layer "
                f"'{earliest.name}' and has no gradient rule (ops with one: "
                f"{', '.join(sorted(gr.GRAD_RULES))}); train only layers after it")
        slots = _slots(node)
        tg = targets.get(node.name, Targets())
        want = {s: None for s in gr.GRAD_RULES[node.op].inputs
                if s in slots and slots[s] in need}
        if tg.bias:
            want["bias"] = None
        if tg.channels is not None:
            n_all = fwd.tensors[slots["weights"]].shape[
                -1 if node.op == "DEPTHWISE_CONV_2D" else 0]
            want["weights"] = None if len(tg.channels) == n_all else tg.channels
        try:
            backwards[node.name] = (gr.backward(op_spec(node, fwd), want), want, slots)
        except gr.GradientError as e:
            raise TrainGraphError(f"node '{node.name}': {e}") from None

    label = b.add("label", (fwd.tensors[fwd.outputs[0]].size //
                            fwd.tensors[fwd.outputs[0]].shape[-1],), "int32")
    logits = fwd.outputs[0]
    loss_nodes = [te.Node(bops.op_name("te_softmax_cross_entropy_grad_f32"), "loss",
                          [logits, b.const_of(None, logits, "zero_point", ""),
                           b.const_of(None, logits, "scale", ""), label],
                          [b.add("loss", (1,), "float32"),
                           b.add(f"grad:{logits}", fwd.tensors[logits].shape, "float32")],
                          {"kernel": "te_softmax_cross_entropy_grad_f32", "scalars": [1, 2]})]
    nodes = []
    for node in fwd.nodes:
        attrs, params = dict(node.attrs), dict(node.params)
        if node.name in targets:
            params = trained_params(node, fwd, targets[node.name])
            if params.get("kernel") in FAST_KERNELS:
                attrs[te.ACC_INIT_VARIES] = True
        nodes.append(te.Node(node.op, node.name, list(node.inputs), list(node.outputs),
                             attrs, params))
        if node.name in backwards:
            bw, want, slots = backwards[node.name]
            names = _Names(b, node, slots, None)
            nodes += b.nodes_of(node, bw.forward, names, _value_shape(b, node, slots, None))
    nodes += loss_nodes
    contribs = {logits: [f"grad:{logits}"]}
    for node in reversed(fwd.nodes):
        if node.name not in backwards:
            continue
        bw, want, slots = backwards[node.name]
        out = node.outputs[0]
        parts = contribs.get(out, [])
        if not parts:
            continue                       # not on a path to the loss
        g = parts[0]
        for k, part in enumerate(parts[1:]):
            acc = b.add(f"grad:{out}" if k == len(parts) - 2 else f"grad:{out}~{k}",
                        fwd.tensors[out].shape, "float32")
            nodes.append(te.Node(bops.ACCUMULATE, f"{node.name}/accumulate_{k}", [g, part],
                                 [acc], {}))
            g = acc
        names = _Names(b, node, slots, g)
        for slot in ("weights", "bias"):
            if slot in want:
                p = slots[slot]
                shape, _ = _value_shape(b, node, slots, want[slot])(f"grad:{slot}")
                b.params[p] = (node.name, slot, want[slot], shape)
        shapes = _value_shape(b, node, slots, want.get("weights"))
        for step in bw.steps:
            nodes += b.nodes_of(node, [step], names, shapes)
            for w in step.writes:
                slot = w[5:] if w and w.startswith("grad:") else None
                if slot in ("weights", "bias") and slot in want:
                    b.grads[slots[slot]] = names(w)
                    up = gr.update_step(op_spec(node, fwd), slot, want[slot], lr=lr,
                                        momentum=momentum, qas=qas)
                    nodes += b.nodes_of(node, [up], names, shapes)
                elif slot in slots and slot not in ("weights", "bias"):
                    contribs.setdefault(slots[slot], []).append(names(w))
    used = {t for n in nodes for t in n.inputs + n.outputs if t is not None}
    used |= set(fwd.inputs) | {"label", "loss"} | set(b.velocities)
    tensors = {k: v for k, v in b.tensors.items() if k in used}
    graph = te.Graph(tensors, nodes, list(fwd.inputs) + ["label"], ["loss"],
                     f"{fwd.name}_train", dict(fwd.meta))
    graph.validate()
    for node in nodes:
        bops.check(node, graph)
    return TrainingGraph(graph, fwd, targets, {p: v[:3] for p, v in b.params.items()},
                         b.velocities, b.grads)
