"""Gradient rules: for each forward op, the backward kernel calls that produce its gradients.

One rule per forward op name, registered with @grad_rule like the OpDefs, in plain data: a
rule takes an OpSpec (op name, attribute dict, the shapes of its tensor slots) and the
targets (which slots need a gradient, with the output channels selected for a parameter)
and returns Steps: C kernel calls with the values they read and write and their constant
arguments.  Asking for fewer targets gives fewer steps (pruning): no input gradient, no
weight gradient, no saved input where nothing needs them.  Like PyTorch's derivatives.yaml
and tinygrad's gradient.py, the rules know nothing of the graph; the walk over tinyengine's
IR that calls them comes later.

Value names in Step.reads / Step.writes:
  "grad:<slot>"        dL/d(real value) of an activation slot, dL/d(stored integers) of a
                       parameter slot ("grad:output" is given to the rule)
  "grad:preact"        dL/d(value before the output's clamp): grad:output through the mask
  "mask:output"        the output's 1-bit clamp mask, packed in the forward
  "saved:<slot>"       a forward activation the backward reads (kept alive until then)
  "<slot>"             a parameter (weights, bias); "<slot>.scale", "<slot>.zero_point" its
                       quantization; "<slot>.qas" its QAS factors; "velocity:<slot>" its
                       momentum buffer
Step.args are the kernel's constant arguments in the form tinytrain.reference takes them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

ALIAS = "alias"  # a step that only renames a value (no kernel, no memory)


class GradientError(ValueError):
    """A forward op or target that has no gradient (the message names the op and what is
    supported)."""


@dataclass(frozen=True)
class OpSpec:
    """What a rule needs to know of one forward op."""
    op: str
    attrs: Mapping = field(default_factory=dict)
    shapes: Mapping = field(default_factory=dict)   # slot -> shape tuple

    def shape(self, slot: str) -> tuple:
        if slot not in self.shapes:
            raise GradientError(f"{self.op}: the gradient rule needs the shape of '{slot}'")
        return tuple(int(d) for d in self.shapes[slot])

    def attr(self, name: str):
        if name not in self.attrs:
            raise GradientError(f"{self.op}: the gradient rule needs attribute '{name}'")
        return self.attrs[name]


@dataclass(frozen=True)
class Step:
    kernel: str                  # C kernel in firmware/kernels/, or ALIAS
    reads: tuple                 # value names, in the kernel's argument order
    writes: tuple                # value names it produces
    args: Mapping = field(default_factory=dict)
    phase: str = "backward"      # "forward": runs right after the op (saves what the backward needs)


@dataclass(frozen=True)
class Backward:
    forward: tuple               # steps after the forward op
    steps: tuple                 # backward steps, in order
    saves: tuple                 # forward activation slots the backward reads

    @property
    def kernels(self) -> set:
        return {s.kernel for s in self.forward + self.steps if s.kernel != ALIAS}


@dataclass(frozen=True)
class GradRule:
    op: str
    inputs: tuple                # activation slots that can receive a gradient
    params: tuple                # parameter slots that can be trained
    clamps: bool                 # the op's int8 output is clamped (saturation, fused ReLU)
    build: Callable              # (OpSpec, targets, grad_out_name) -> list of Steps


GRAD_RULES: dict = {}


def grad_rule(*ops: str, inputs=("input",), params=(), clamps=True):
    """Register fn(spec, targets, g) -> [Step] as the gradient rule of ops; g is the value
    name of the gradient at the op's pre-clamp output."""
    def register(fn):
        for op in ops:
            if op in GRAD_RULES:
                raise ValueError(f"gradient rule for {op} registered twice")
            GRAD_RULES[op] = GradRule(op, tuple(inputs), tuple(params), clamps, fn)
        return fn
    return register


def backward(spec: OpSpec, targets: Mapping) -> Backward:
    """The backward of one op for the given targets.

    targets: slot -> None (the whole gradient) or a tuple of output channels (a parameter's
    selected channels: only their gradient rows are computed).  No targets: nothing.
    """
    rule = GRAD_RULES.get(spec.op)
    if rule is None:
        raise GradientError(f"op {spec.op} has no gradient rule (ops with one: "
                            f"{', '.join(sorted(GRAD_RULES))})")
    targets = dict(targets)
    for slot, sel in targets.items():
        if slot not in rule.inputs + rule.params:
            raise GradientError(f"{spec.op} has no gradient for '{slot}' (it has: "
                                f"{', '.join(rule.inputs + rule.params)})")
        if sel is not None and slot not in rule.params:
            raise GradientError(f"{spec.op}: a channel selection applies to parameters only, "
                                f"not to '{slot}'")
        if sel is not None:
            n = spec.shape("output")[-1]
            if not sel or len(set(sel)) != len(sel) or not all(0 <= int(c) < n for c in sel):
                raise GradientError(f"{spec.op}: the selected channels of '{slot}' must be "
                                    f"distinct, at least one, in [0, {n}); got {tuple(sel)}")
    if not targets:
        return Backward((), (), ())
    steps = []
    g = "grad:output"
    if rule.clamps:
        lo, hi = int(spec.attr("act_min")), int(spec.attr("act_max"))
        steps.append(Step("te_clamp_grad_mask_s8", ("output",), ("mask:output",),
                          {"act_min": lo, "act_max": hi}, phase="forward"))
        steps.append(Step("te_clamp_grad_input_f32", ("grad:output", "mask:output"),
                          ("grad:preact",)))
        g = "grad:preact"
    steps += rule.build(spec, targets, g)
    fwd = tuple(s for s in steps if s.phase == "forward")
    bwd = tuple(s for s in steps if s.phase == "backward")
    saves = tuple(sorted({r[len("saved:"):] for s in bwd for r in s.reads
                          if r.startswith("saved:")}))
    return Backward(fwd, bwd, saves)


# -- window geometry ----------------------------------------------------------------------------
def window_padding(in_size: int, k: int, stride: int, padding, axis: int) -> tuple:
    """(pad_before, out_size) of one spatial axis for padding "SAME", "VALID" or explicit
    (top, bottom, left, right)."""
    if padding == "SAME":
        out = -(-in_size // stride)
        total = max((out - 1) * stride + k - in_size, 0)
        return total // 2, out
    if padding == "VALID":
        return 0, (in_size - k) // stride + 1
    if isinstance(padding, (tuple, list)) and len(padding) == 4:
        before, after = padding[2 * axis], padding[2 * axis + 1]
        return int(before), (in_size + before + after - k) // stride + 1
    raise GradientError(f"padding {padding!r} (SAME, VALID or (top, bottom, left, right))")


def _window(spec: OpSpec, k_hw: tuple, in_hw: tuple, out_hw: tuple) -> dict:
    """stride / pad args of a window op, checked against the output shape."""
    if (int(spec.attrs.get("dilation_h_factor", 1)), int(spec.attrs.get("dilation_w_factor", 1))) != (1, 1):
        raise GradientError(f"{spec.op}: dilation > 1 has no gradient kernel (dilation 1 only)")
    stride = (int(spec.attr("stride_h")), int(spec.attr("stride_w")))
    pad, out = zip(*(window_padding(in_hw[a], k_hw[a], stride[a], spec.attr("padding"), a)
                     for a in range(2)))
    if tuple(out) != tuple(out_hw):
        raise GradientError(f"{spec.op}: output {out_hw} does not match input {in_hw}, kernel "
                            f"{k_hw}, stride {stride}, padding {spec.attr('padding')!r}")
    return {"stride": stride, "pad": tuple(pad)}


def _channels(sel):
    return None if sel is None else tuple(int(c) for c in sel)


def _bias_step(g):
    return Step("te_conv_2d_grad_bias_f32", (g, "weights.scale", "input.scale"), ("grad:bias",))


# -- rules ------------------------------------------------------------------------------------
@grad_rule("CONV_2D", params=("weights", "bias"))
def _conv_2d(spec, targets, g):
    b, ih, iw, ic = spec.shape("input")
    oc, kh, kw, _ = spec.shape("weights")
    win = _window(spec, (kh, kw), (ih, iw), spec.shape("output")[1:3])
    steps = []
    if "input" in targets:
        steps.append(Step("te_conv_2d_grad_input_f32", (g, "weights", "weights.scale"),
                          ("grad:input",), {"in_hw": (ih, iw), **win}))
    if "weights" in targets:
        steps.append(Step("te_conv_2d_grad_weight_f32",
                          (g, "saved:input", "input.zero_point", "input.scale", "weights.scale"),
                          ("grad:weights",),
                          {"k_hw": (kh, kw), **win, "channels": _channels(targets["weights"])}))
    if "bias" in targets:
        steps.append(_bias_step(g))
    return steps


@grad_rule("DEPTHWISE_CONV_2D", params=("weights", "bias"))
def _depthwise_conv_2d(spec, targets, g):
    b, ih, iw, ic = spec.shape("input")
    _, kh, kw, oc = spec.shape("weights")
    if oc % ic:
        raise GradientError(f"{spec.op}: {oc} output channels is not a multiple of {ic} inputs")
    win = _window(spec, (kh, kw), (ih, iw), spec.shape("output")[1:3])
    m = oc // ic
    steps = []
    if "input" in targets:
        steps.append(Step("te_depthwise_conv_2d_grad_input_f32", (g, "weights", "weights.scale"),
                          ("grad:input",), {"depth_multiplier": m, "in_hw": (ih, iw), **win}))
    if "weights" in targets:
        steps.append(Step("te_depthwise_conv_2d_grad_weight_f32",
                          (g, "saved:input", "input.zero_point", "input.scale", "weights.scale"),
                          ("grad:weights",),
                          {"depth_multiplier": m, "k_hw": (kh, kw), **win,
                           "channels": _channels(targets["weights"])}))
    if "bias" in targets:
        steps.append(_bias_step(g))
    return steps


@grad_rule("FULLY_CONNECTED", params=("weights", "bias"))
def _fully_connected(spec, targets, g):
    out_f, in_f = spec.shape("weights")
    if int(np.prod(spec.shape("input"))) % in_f:
        raise GradientError(f"{spec.op}: input {spec.shape('input')} is not rows of {in_f}")
    steps = []
    if "input" in targets:
        steps.append(Step("te_fully_connected_grad_input_f32", (g, "weights", "weights.scale"),
                          ("grad:input",), {"in_shape": spec.shape("input")}))
    if "weights" in targets:
        steps.append(Step("te_fully_connected_grad_weight_f32",
                          (g, "saved:input", "input.zero_point", "input.scale", "weights.scale"),
                          ("grad:weights",), {"channels": _channels(targets["weights"])}))
    if "bias" in targets:
        steps.append(_bias_step(g))
    return steps


@grad_rule("ADD", inputs=("input1", "input2"))
def _add(spec, targets, g):
    out = spec.shape("output")
    for slot in targets:
        if spec.shape(slot) != out:
            raise GradientError(f"ADD with broadcasting ({spec.shape(slot)} to {out}) has no "
                                f"gradient rule (equal shapes only)")
    # the real sum's gradient reaches both inputs unchanged (their scales do not enter)
    return [Step(ALIAS, (g,), (f"grad:{slot}",)) for slot in ("input1", "input2") if slot in targets]


@grad_rule("AVERAGE_POOL_2D")
def _average_pool_2d(spec, targets, g):
    b, ih, iw, c = spec.shape("input")
    k = (int(spec.attr("filter_height")), int(spec.attr("filter_width")))
    win = _window(spec, k, (ih, iw), spec.shape("output")[1:3])
    return [Step("te_avg_pool_2d_grad_input_f32", (g,), ("grad:input",),
                 {"in_hw": (ih, iw), "filter_hw": k, **win})]


@grad_rule("MEAN")
def _mean(spec, targets, g):
    shape = spec.shape("input")
    axes = tuple(sorted({int(a) % len(shape) for a in spec.attr("axes")}))
    return [Step("te_mean_grad_input_f32", (g,), ("grad:input",),
                 {"in_shape": shape, "axes": axes})]


@grad_rule("RESHAPE", clamps=False)
def _reshape(spec, targets, g):
    return [Step("te_reshape_grad_input_f32", (g,), ("grad:input",),
                 {"in_shape": spec.shape("input")})]


@grad_rule("PAD", clamps=False)
def _pad(spec, targets, g):
    shape, out = spec.shape("input"), spec.shape("output")
    before = tuple(int(p) for p in spec.attr("pad_before"))
    if len(before) != len(shape) or any(o < i + p for i, o, p in zip(shape, out, before)):
        raise GradientError(f"PAD: pad_before {before} does not fit input {shape} in output {out}")
    return [Step("te_pad_grad_input_f32", (g,), ("grad:input",),
                 {"in_shape": shape, "pad_before": before})]


@grad_rule("TRANSPOSE", clamps=False)
def _transpose(spec, targets, g):
    perm = tuple(int(a) for a in spec.attr("perm"))
    if sorted(perm) != list(range(len(spec.shape("input")))) or len(perm) > 5:
        raise GradientError(f"TRANSPOSE: perm {perm} is not a permutation of the input's "
                            f"{len(spec.shape('input'))} axes (at most 5)")
    return [Step("te_transpose_grad_input_f32", (g,), ("grad:input",), {"perm": perm})]


@grad_rule("RELU", "RELU6", "RELU_N1_TO_1")
def _activation(spec, targets, g):
    """A standalone activation: its int8 output's clamp is the whole op (the requantization
    between input and output scales does not change the real value's gradient)."""
    return [Step(ALIAS, (g,), ("grad:input",))]


# -- parameter updates ------------------------------------------------------------------------
def weight_layout(op: str, weights_shape) -> tuple:
    """(outer, channels, inner) view of a weight tensor for te_sgd_update_s8: the output
    channel axis in the middle."""
    shape = tuple(int(d) for d in weights_shape)
    if op == "DEPTHWISE_CONV_2D":
        return int(np.prod(shape[:-1])), shape[-1], 1
    if op in ("CONV_2D", "FULLY_CONNECTED"):
        return 1, shape[0], int(np.prod(shape[1:]))
    raise GradientError(f"op {op} has no trainable weights (CONV_2D, DEPTHWISE_CONV_2D, "
                        f"FULLY_CONNECTED)")


def qas_factors(slot: str, weight_scale, input_scale: float) -> np.ndarray:
    """Quantization-aware scaling (Lin et al. 2022): a weight gradient is multiplied by
    s_w^-2, a bias gradient by (s_w s_x)^-2, per channel, as float32."""
    s = np.asarray(weight_scale, np.float64)
    if slot == "bias":
        s = s * float(input_scale)
    elif slot != "weights":
        raise GradientError(f"QAS applies to weights and bias, not '{slot}'")
    return (1.0 / (s * s)).astype(np.float32)


def update_step(spec: OpSpec, slot: str, channels=None, *, lr: float, momentum: float = 0.0,
                qas: bool = True) -> Step:
    """The SGD step applying grad:<slot> to a parameter as soon as the gradient exists."""
    rule = GRAD_RULES.get(spec.op)
    if rule is None or slot not in rule.params:
        raise GradientError(f"{spec.op} has no trainable parameter '{slot}'")
    if not lr >= 0 or not 0 <= momentum < 1:
        raise GradientError(f"SGD needs lr >= 0 and momentum in [0, 1), got lr {lr}, "
                            f"momentum {momentum}")
    reads = (slot, f"grad:{slot}", f"{slot}.qas" if qas else None,
             f"velocity:{slot}" if momentum else None)
    writes = (slot, f"velocity:{slot}" if momentum else None)
    args = {"lr": float(lr), "momentum": float(momentum)}
    if slot == "bias":
        return Step("te_sgd_update_s32", reads, writes, args)
    return Step("te_sgd_update_s8", reads, writes,
                {**args, "layout": weight_layout(spec.op, spec.shape(slot)),
                 "channels": _channels(channels)})
