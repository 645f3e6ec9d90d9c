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
        channel, refolded after the layer's updates: tinytrain/firmware.py)."""
        acc = sum(n.params["acc_init"].nbytes for n in self.graph.nodes if n.name in self.targets)
        return sum(self.graph.tensors[t].nbytes for t in self.params) + acc

    def state_bytes(self) -> int:
        """SRAM of the optimizer state (momentum buffers)."""
        return sum(self.graph.tensors[t].nbytes for t in self.velocities)


# -- forward and head ---------------------------------------------------------------------------
def replace_head(graph, classes: int, seed: int = 0):
    """The graph with its classifier head (the last FULLY_CONNECTED or 1x1 CONV_2D) replaced by
    one for `classes` classes, and the nodes after it (softmax, dequantize, reshape) dropped.

    New weights: uniform in +-1/sqrt(fan_in) (PyTorch's nn.Linear init), seeded, quantized per
    output channel with scale 2 * max|w_c| / 127 (half the int8 range, room to grow in
    training); bias 0 (int32, scale s_x * s_w[c]); logits int8 with scale LOGIT_SCALE, zero
    point 0."""
    if not isinstance(classes, int) or classes < 2:
        raise TrainGraphError(f"--classes must be an integer >= 2, got {classes!r}")
    idx = [i for i, n in enumerate(graph.nodes) if n.op in TRAINABLE_OPS]
    if not idx:
        raise TrainGraphError(f"{graph.name}: no FULLY_CONNECTED or CONV_2D node to use as the "
                              f"classifier head")
    i = idx[-1]
    old = graph.nodes[i]
    x = graph.tensors[old.inputs[0]]
    w_old = graph.tensors[old.inputs[1]]
    if old.op == "DEPTHWISE_CONV_2D" or (old.op == "CONV_2D" and w_old.shape[1:3] != (1, 1)):
        raise TrainGraphError(f"node '{old.name}' ({old.op}): the classifier head must be a "
                              f"FULLY_CONNECTED or a 1x1 CONV_2D")
    fan_in = int(np.prod(w_old.shape[1:]))
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(fan_in)
    w = rng.uniform(-bound, bound, size=(classes, fan_in))
    scale = 2 * np.abs(w).max(axis=1) / 127
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    wshape = (classes,) + tuple(w_old.shape[1:])
    tensors = {t: v for t, v in graph.tensors.items()}
    y_old = graph.tensors[old.outputs[0]]
    yshape = tuple(y_old.shape[:-1]) + (classes,)
    tensors[f"{HEAD}/weights"] = te.Tensor(f"{HEAD}/weights", wshape, "int8",
                                           te.QuantParams(scale, np.zeros(classes), 0),
                                           q.reshape(wshape))
    bscale = scale * x.quant.s
    tensors[f"{HEAD}/bias"] = te.Tensor(f"{HEAD}/bias", (classes,), "int32",
                                        te.QuantParams(bscale, np.zeros(classes), 0),
                                        np.zeros(classes, np.int32))
    tensors[f"{HEAD}/logits"] = te.Tensor(f"{HEAD}/logits", yshape, "int8",
                                          te.QuantParams([LOGIT_SCALE], [0]))
    head = te.Node(old.op, HEAD, [old.inputs[0], f"{HEAD}/weights", f"{HEAD}/bias"],
                   [f"{HEAD}/logits"], {**old.attrs, "activation": "NONE"})
    nodes = graph.nodes[:i] + [head]
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
        f = gr.qas_factors(slot, _channel_scales(node, w), x.quant.s)
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


def build(fwd, scheme: Scheme, *, lr: float = 0.01, momentum: float = 0.0, qas: bool = True
          ) -> TrainingGraph:
    """The training graph of a forward graph (from forward_graph) under a scheme.  Its forward
    nodes are copies (te.plan_memory writes a node's params: each graph is planned once)."""
    head = next(n for n in fwd.nodes if n.outputs[0] == fwd.outputs[0])
    targets = resolve(scheme, fwd, head.name)
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
        params = portable_params(node, fwd) if node.name in targets else dict(node.params)
        nodes.append(te.Node(node.op, node.name, list(node.inputs), list(node.outputs),
                             dict(node.attrs), params))
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
