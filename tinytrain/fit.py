"""Training on the host (`tinytrain fit MODEL --host`): the training graph of a scheme
(tinytrain.graph.build), trained in PyTorch (tinytrain.torch_sim) with mini-batch 1 as the
device does, in one of two modes:

  int8     simulated int8, the device's arithmetic: the int8 forward exactly as tinyengine
           runs it (te.run_reference), gradients by torch.autograd through it (straight
           through the requantization, clamps as masks: torch_sim.graph_gradients), each
           update by the update kernels' own definition (tinytrain.reference: QAS factors,
           momentum, int8 weights and int32 biases rounded and saturated after each step)
  float32  the same scheme in float: trained parameters kept as unrounded floats (the
           stored integers' real-valued counterpart, updated by the same SGD formula),
           frozen parameters the int8 model's dequantized, activations float32, clamped
           to each int8 output's real range but not rounded

The forward below the earliest trained layer (the frozen prefix) does not change during
training: its int8 outputs are computed once per sample and cached, which is exact in both
modes (the device computes the same int8 values).  Samples are visited in the order given,
every epoch, as the firmware reads its training stream.  The learning rate follows
lr_at (constant, or cosine over all steps).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

import tinyengine as te

from . import graph as tgm
from . import reference
from .firmware import SCHEDULES      # the learning-rate schedules the firmware compiles
from .ops import UPDATE_KERNELS


class FitError(ValueError):
    """Options host training cannot use."""


@dataclass(frozen=True)
class Options:
    epochs: int = 5
    lr: float = 0.05
    momentum: float = 0.0
    lr_schedule: str = "constant"
    qas: bool = True
    float32: bool = False          # False: simulated int8

    def __post_init__(self):
        if not isinstance(self.epochs, int) or self.epochs < 0:
            raise FitError(f"--epochs must be an integer >= 0, got {self.epochs!r}")
        if not self.lr >= 0 or not 0 <= self.momentum < 1:
            raise FitError(f"--lr must be >= 0 and --momentum in [0, 1), got {self.lr}, "
                           f"{self.momentum}")
        if self.lr_schedule not in SCHEDULES:
            raise FitError(f"--lr-schedule must be one of {', '.join(SCHEDULES)}, got "
                           f"{self.lr_schedule!r}")

    @property
    def mode(self) -> str:
        return "float32" if self.float32 else "int8"


def lr_at(step: int, total: int, lr: float, schedule: str) -> float:
    """The learning rate of training step `step` (0-based) of `total`: constant, or cosine
    from lr down to 0 over all steps (lr * (1 + cos(pi * step / total)) / 2)."""
    if schedule == "cosine" and total > 0:
        return lr * 0.5 * (1.0 + math.cos(math.pi * step / total))
    return lr


@dataclass
class FitResult:
    curve: list                    # [(epoch, mean train loss or None at epoch 0, accuracy)]
    params: dict                   # trained tensor name -> final value (int8 / int32 or float)
    mode: str
    test_count: int
    extra: dict = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return self.curve[-1][2]


def _subgraph(fwd, nodes, inputs, outputs, tensors=None):
    used = {t for n in nodes for t in n.inputs + n.outputs if t is not None} | set(inputs)
    src = tensors or fwd.tensors
    return te.Graph({k: v for k, v in src.items() if k in used}, list(nodes), list(inputs),
                    list(outputs), fwd.name, dict(fwd.meta))


class HostTrainer:
    """Host training of one training graph (module docstring)."""

    def __init__(self, tg: tgm.TrainingGraph, options: Options):
        from . import torch_sim  # noqa: F401  (the optional extra `train`: fail here, early)

        self.tg, self.opts = tg, options
        fwd = tg.forward
        start = next(i for i, n in enumerate(fwd.nodes) if n.name in tg.targets)
        produced = {t for n in fwd.nodes[start:] for t in n.outputs}
        boundary = []
        for n in fwd.nodes[start:]:
            for t in n.inputs:
                if t is not None and not fwd.tensors[t].is_const and t not in produced \
                        and t not in boundary:
                    boundary.append(t)
        self.boundary = boundary
        self.prefix = _subgraph(fwd, fwd.nodes[:start], fwd.inputs, boundary) if start else None
        # the suffix owns copies of the trained tensors: their data changes as it trains
        tensors = dict(fwd.tensors)
        for p in tg.params:
            t = fwd.tensors[p]
            tensors[p] = te.Tensor(t.name, t.shape, t.dtype, t.quant, np.array(t.data))
        self.suffix = _subgraph(fwd, fwd.nodes[start:], boundary, fwd.outputs, tensors)
        self.specs = {n.name: tgm.op_spec(n, fwd) for n in self.suffix.nodes}
        self.ops = {n.name: n.op for n in fwd.nodes}
        self.updates = [n for n in tg.graph.nodes if n.attrs.get("kernel") in UPDATE_KERNELS]
        self.velocity = {n.inputs[0]: None if n.inputs[3] is None else
                         np.zeros(tg.graph.tensors[n.inputs[3]].shape, np.float32)
                         for n in self.updates}
        self.value = {p: np.array(tensors[p].data, np.float32 if options.float32 else None)
                      for p in tg.params}

    # -- the frozen prefix ------------------------------------------------------------------
    def features(self, x: np.ndarray, progress=None) -> dict:
        """The prefix's int8 outputs of int8 inputs x [N, H, W, C]: boundary tensor -> [N, ...]."""
        if self.prefix is None:
            return {self.boundary[0]: np.asarray(x, np.int8)}
        outs = {t: [] for t in self.boundary}
        for i in range(len(x)):
            for t, v in zip(self.boundary, te.run_reference(self.prefix, [x[i:i + 1]])):
                outs[t].append(v)
            if progress:
                progress(1)
        return {t: np.concatenate(v) for t, v in outs.items()}

    # -- int8 -------------------------------------------------------------------------------
    def _set_params(self):
        for p, v in self.value.items():
            self.suffix.tensors[p].data = v

    def _forward_int8(self, feats: dict, i: int) -> dict:
        return te.run_reference(self.suffix, [feats[t][i:i + 1] for t in self.boundary],
                                keep_all=True)

    def _grads_int8(self, feats, i, label):
        from . import torch_sim as ts

        values = self._forward_int8(feats, i)
        grads = ts.graph_gradients(self.suffix, values, self.specs, np.array([label]),
                                   {p: None for p in self.tg.params})
        logits = values[self.suffix.outputs[0]]
        lq = self.suffix.tensors[self.suffix.outputs[0]].quant
        z = lq.s * (logits.reshape(-1).astype(np.float64) - lq.zp)
        z -= z.max()
        loss = float(np.log(np.exp(z).sum()) - z[label])
        return grads, loss

    # -- float32 ----------------------------------------------------------------------------
    def _forward_float(self, feats: dict, rows, with_grad: bool):
        """(logits [B, classes] torch tensor, leaves of the trained parameters)."""
        import torch

        from . import torch_sim as ts

        T = self.suffix.tensors
        real, leaves = {}, {}
        for t in self.boundary:
            q = T[t].quant
            real[t] = ts.dequantize(feats[t][rows], q.zp, q.s)

        def param(name):
            if name is None:
                return None
            if name in self.value:
                if name not in leaves:
                    leaves[name] = ts.tensor(self.value[name], requires_grad=with_grad)
                return leaves[name]
            return ts.tensor(T[name].data)

        with torch.set_grad_enabled(with_grad):
            for node in self.suffix.nodes:
                spec = self.specs[node.name]
                y = ts.node_forward(node, spec, T, real.__getitem__, param)
                a = spec.attrs
                if "act_min" in a:
                    q = T[node.outputs[0]].quant
                    y = ts.clamp(y, q.s * (a["act_min"] - q.zp), q.s * (a["act_max"] - q.zp))
                real[node.outputs[0]] = y
        logits = real[self.suffix.outputs[0]]
        return logits.reshape(logits.shape[0], -1), leaves

    def _grads_float(self, feats, i, label):
        from . import torch_sim as ts

        logits, leaves = self._forward_float(feats, slice(i, i + 1), True)
        loss = ts.softmax_cross_entropy(logits, [label])
        loss.backward()
        return {p: leaves[p].grad.numpy() for p in self.tg.params}, float(loss.detach())

    # -- updates ----------------------------------------------------------------------------
    def _update(self, grads: dict, lr: float):
        for node in self.updates:
            p = node.inputs[0]
            layer, _, channels = self.tg.params[p]
            g = grads[p]
            if channels is not None:
                depthwise = self.ops[layer] == "DEPTHWISE_CONV_2D"
                g = np.take(g, channels, axis=-1 if depthwise else 0)
            qas = None if node.inputs[2] is None else self.tg.graph.tensors[node.inputs[2]].data
            args = dict(node.attrs["args"], lr=lr)
            if self.opts.float32:
                self.value[p], self.velocity[p] = _float_update(
                    self.value[p], g, qas, self.velocity[p], args)
            else:
                new, vel = reference.KERNELS[node.attrs["kernel"]](
                    self.value[p], g, qas, self.velocity[p], **args)
                self.value[p], self.velocity[p] = new, vel

    # -- epochs -----------------------------------------------------------------------------
    def step(self, feats: dict, i: int, label: int, lr: float) -> float:
        """One training step on sample i; returns its loss."""
        if self.opts.float32:
            grads, loss = self._grads_float(feats, i, label)
        else:
            self._set_params()
            grads, loss = self._grads_int8(feats, i, label)
        self._update(grads, lr)
        return loss

    def predict(self, feats: dict, n: int) -> np.ndarray:
        """The predicted class of each of n samples."""
        if self.opts.float32:
            import torch

            out = []
            for s in range(0, n, 256):
                logits, _ = self._forward_float(feats, slice(s, min(n, s + 256)), False)
                out.append(torch.argmax(logits, dim=1).numpy())
            return np.concatenate(out) if out else np.zeros(0, np.int64)
        self._set_params()
        return np.array([int(np.argmax(self._forward_int8(feats, i)[self.suffix.outputs[0]]))
                         for i in range(n)], np.int64)

    def fit(self, train: tuple, test: tuple, bar=None, on_epoch=None) -> FitResult:
        """Train on (int8 x, y), evaluating on test before training and after each epoch.
        bar: a tqdm-like progress bar (update(n), set_postfix_str) or None; on_epoch(row)
        called with each curve row."""
        import torch

        def tick(n=1):
            if bar is not None:
                bar.update(n)

        threads = torch.get_num_threads()
        torch.set_num_threads(1)       # mini-batch 1: a thread pool only adds overhead
        try:
            return self._fit(train, test, tick, bar, on_epoch)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, train, test, tick, bar, on_epoch) -> FitResult:

        ftrain = self.features(train[0], tick)
        ftest = self.features(test[0], tick)
        ytr, yte = np.asarray(train[1]), np.asarray(test[1])
        curve = []

        def evaluate(epoch, loss):
            acc = float((self.predict(ftest, len(yte)) == yte).mean()) if len(yte) else 0.0
            curve.append((epoch, loss, acc))
            if on_epoch:
                on_epoch(curve[-1])

        evaluate(0, None)
        total = self.opts.epochs * len(ytr)
        for epoch in range(1, self.opts.epochs + 1):
            losses = []
            for i in range(len(ytr)):
                step = (epoch - 1) * len(ytr) + i
                lr = lr_at(step, total, self.opts.lr, self.opts.lr_schedule)
                losses.append(self.step(ftrain, i, int(ytr[i]), lr))
                tick()
                if bar is not None and i % 16 == 0:
                    bar.set_postfix_str(f"epoch {epoch} loss {np.mean(losses[-64:]):.3f}")
            evaluate(epoch, float(np.mean(losses)) if losses else None)
        return FitResult(curve, {p: np.array(v) for p, v in self.value.items()},
                         self.opts.mode, len(yte))

    def work(self, n_train: int, n_test: int) -> int:
        """Progress-bar units of fit: prefix samples, then training steps."""
        return (n_train + n_test if self.prefix is not None else 0) + self.opts.epochs * n_train


def _float_update(value, grad, qas, velocity, args):
    """The update kernels' SGD formula (QAS factor, momentum) on unrounded float parameters."""
    g = np.asarray(grad, np.float32)
    if "layout" in args:
        outer, n_all, inner = args["layout"]
        channels = args.get("channels")
        sel = np.arange(n_all) if channels is None else np.asarray(channels)
        w = value.reshape(outer, n_all, inner).copy()
        g = g.reshape(outer, len(sel), inner)
        if qas is not None:
            g = g * np.asarray(qas, np.float32)[sel][None, :, None]
        if velocity is not None:
            velocity = np.float32(args["momentum"]) * velocity.reshape(g.shape) + g
            g = velocity
        w[:, sel] -= np.float32(args["lr"]) * g
        return w.reshape(value.shape), velocity
    if qas is not None:
        g = g * np.asarray(qas, np.float32)
    if velocity is not None:
        velocity = np.float32(args["momentum"]) * velocity + g
        g = velocity
    return value - np.float32(args["lr"]) * g, velocity
