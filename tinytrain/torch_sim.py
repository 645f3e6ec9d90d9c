"""PyTorch simulation of the training math: the golden of every backward kernel.

The int8 forward is simulated on its dequantized values as float32 tensors: an activation is
scale * (q - zero_point), a weight filter_scale[oc] * q, a bias filter_scale[oc] *
input_scale * q.  The integer tensors that are trained (q of weights and biases) are float
leaves with requires_grad, so torch.autograd gives the gradients of the stored integers,
the quantized graph's gradients of "On-Device Training Under 256KB Memory"; activation
leaves give gradients of real values.  Layouts are the kernels' (NHWC, OHWI); each function
converts to PyTorch's NCHW inside.  Needs the optional extra `train` (torch==2.13.0).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def tensor(a, requires_grad: bool = False) -> torch.Tensor:
    """A float32 leaf tensor of array a."""
    return torch.tensor(np.asarray(a, dtype=np.float32), requires_grad=requires_grad)


def dequantize(q, zero_point: int, scale: float, requires_grad: bool = False) -> torch.Tensor:
    """Real values scale * (q - zero_point) of an int8 tensor, as a float32 leaf."""
    x = np.float32(scale) * (np.asarray(q, np.float32) - np.float32(zero_point))
    return tensor(x, requires_grad)


def _pad_to(x_nchw, k_hw, stride, pad, out_hw):
    """Zero-pad (or crop) an NCHW tensor so that a VALID window op gives exactly out_hw."""
    h, w = x_nchw.shape[2:]
    bottom = (out_hw[0] - 1) * stride[0] + k_hw[0] - h - pad[0]
    right = (out_hw[1] - 1) * stride[1] + k_hw[1] - w - pad[1]
    return F.pad(x_nchw, (pad[1], right, pad[0], bottom))


def conv_2d(x, weights_q, filter_scale, bias_q, input_scale, *, stride, pad, out_hw):
    """y = conv(x, filter_scale * weights_q) + filter_scale * input_scale * bias_q (NHWC,
    before the clamp); x real [B, H, W, C], weights_q [O, KH, KW, I], pad (top, left)."""
    s = tensor(filter_scale)
    w = (weights_q * s[:, None, None, None]).permute(0, 3, 1, 2)
    xp = _pad_to(x.permute(0, 3, 1, 2), w.shape[2:], stride, pad, out_hw)
    y = F.conv2d(xp, w, stride=stride)
    if bias_q is not None:
        y = y + (bias_q * s * np.float32(input_scale))[None, :, None, None]
    return y.permute(0, 2, 3, 1)


def depthwise_conv_2d(x, weights_q, filter_scale, bias_q, input_scale, *, depth_multiplier,
                      stride, pad, out_hw):
    """DEPTHWISE_CONV_2D: weights_q [1, KH, KW, C * M], output channel ic * M + m."""
    s = tensor(filter_scale)
    w = (weights_q[0] * s).permute(2, 0, 1)[:, None]          # [C * M, 1, KH, KW]
    in_c = x.shape[-1]
    xp = _pad_to(x.permute(0, 3, 1, 2), w.shape[2:], stride, pad, out_hw)
    y = F.conv2d(xp, w, stride=stride, groups=in_c)
    if bias_q is not None:
        y = y + (bias_q * s * np.float32(input_scale))[None, :, None, None]
    return y.permute(0, 2, 3, 1)


def fully_connected(x, weights_q, weight_scale, bias_q, input_scale):
    s = tensor(weight_scale)
    y = x @ (weights_q * s[:, None]).T
    if bias_q is not None:
        y = y + bias_q * s * np.float32(input_scale)
    return y


def avg_pool_2d(x, *, filter_hw, stride, pad, out_hw):
    """Mean of each window's in-bounds pixels (padding never counted), NHWC."""
    xp = _pad_to(x.permute(0, 3, 1, 2), filter_hw, stride, pad, out_hw)
    ones = _pad_to(torch.ones_like(x[:1, ..., :1]).permute(0, 3, 1, 2), filter_hw, stride, pad,
                   out_hw)
    sums = F.avg_pool2d(xp, filter_hw, stride, divisor_override=1)
    counts = F.avg_pool2d(ones, filter_hw, stride, divisor_override=1)
    return (sums / counts).permute(0, 2, 3, 1)


def mean(x, axes):
    return x.mean(dim=tuple(axes))


def pad(x, pad_before, out_shape):
    spec = []
    for d in reversed(range(x.dim())):
        spec += [pad_before[d], out_shape[d] - x.shape[d] - pad_before[d]]
    return F.pad(x, spec)


def clamp(y, lo: float, hi: float):
    """The int8 output's clamp on real values: gradient 0 on and outside the bounds."""
    return F.hardtanh(y, lo, hi)


def softmax_cross_entropy(logits_real, labels):
    return F.cross_entropy(logits_real, torch.as_tensor(np.asarray(labels, np.int64)))


def sgd_step_quantized(params, grads, *, lr: float, momentum: float = 0.0, grad_scales=None,
                       bounds, state=None):
    """One torch.optim.SGD step on integer-valued float32 parameters, each gradient first
    multiplied by its QAS factor, then each parameter rounded (ties to even) and clamped.

    params, grads: lists of float32 tensors (the stored integers as floats and their
    gradients); grad_scales: per-parameter tensors broadcast to the gradient, or None;
    bounds: per-parameter (lo, hi) integer range.  state: the optimizer to reuse across steps
    (its momentum buffers), or None for a new one.  Returns (rounded params, optimizer).
    Int32 biases beyond 2^24 lose precision in float32: use the update kernels' own
    definition (reference.sgd_update_s32) for those.
    """
    leaves = [torch.nn.Parameter(p.detach().clone()) for p in params]
    opt = state or torch.optim.SGD(leaves, lr=lr, momentum=momentum)
    if state is not None:
        for group_p, leaf in zip(opt.param_groups[0]["params"], leaves):
            group_p.data.copy_(leaf.data)
        leaves = opt.param_groups[0]["params"]
    for i, (leaf, g) in enumerate(zip(leaves, grads)):
        g = g.detach().clone()
        if grad_scales is not None and grad_scales[i] is not None:
            g = g * grad_scales[i]
        leaf.grad = g
    opt.step()
    out = []
    for leaf, (lo, hi) in zip(leaves, bounds):
        with torch.no_grad():
            leaf.copy_(torch.round(leaf.clamp(lo, hi)))
        out.append(leaf.detach().clone())
    return out, opt


class _Requantize(torch.autograd.Function):
    """The int8 output of an op: y rounded to its quantization and clamped to [act_min,
    act_max], as real values; backward: the gradient passes where the int8 output lies
    strictly inside the bounds (te_clamp_grad_mask_s8's mask), rounding straight through."""

    @staticmethod
    def forward(ctx, y, scale, zero_point, act_min, act_max):
        q = torch.clamp(torch.round(y / scale) + zero_point, act_min, act_max)
        ctx.save_for_backward((q > act_min) & (q < act_max))
        return (q - zero_point) * scale

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None, None


def requantize(y, scale: float, zero_point: int, act_min: int, act_max: int):
    """(real output, int8 output as a NumPy array) of an op whose pre-clamp value is y."""
    out = _Requantize.apply(y, float(scale), float(zero_point), float(act_min), float(act_max))
    with torch.no_grad():
        q = torch.clamp(torch.round(y / float(scale)) + float(zero_point), act_min, act_max)
    return out, q.numpy().astype(np.int8)


def _straight_through(y, actual_real, mask=None):
    """The op's output with the int8 forward's exact values and y's gradient (through the
    clamp's mask where given)."""
    d = y - y.detach()
    return (d if mask is None else d * mask) + actual_real


def _pad_before(x, k_hw, attrs) -> tuple:
    """(top, left) padding of a window op from its rule attributes."""
    from .grad_rules import window_padding
    return tuple(window_padding(x.shape[1 + i], k_hw[i], attrs[f"stride_{'hw'[i]}"],
                                attrs["padding"], i)[0] for i in range(2))


def node_forward(node, spec, tensors, act, param):
    """The real output of a prepared forward node before its clamp, batch-agnostic.

    spec: its grad_rules.OpSpec (tinytrain.graph.op_spec); tensors: the graph's tensors;
    act(name) -> real activation [B, ...]; param(name) -> the stored integers of a weight or
    bias as a float tensor (or None for None)."""
    T = tensors
    x = act(node.inputs[0])
    out_shape = (x.shape[0],) + tuple(T[node.outputs[0]].shape[1:])
    a = spec.attrs
    if node.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        kw = dict(stride=(a["stride_h"], a["stride_w"]), out_hw=out_shape[1:3],
                  pad=_pad_before(x, spec.shape("weights")[1:3], a))
        w, s_w = param(node.inputs[1]), T[node.inputs[1]].quant.scale
        b = param(node.inputs[2] if len(node.inputs) > 2 else None)
        if node.op == "CONV_2D":
            return conv_2d(x, w, s_w, b, T[node.inputs[0]].quant.s, **kw)
        return depthwise_conv_2d(x, w, s_w, b, T[node.inputs[0]].quant.s,
                                 depth_multiplier=out_shape[-1] // x.shape[-1], **kw)
    if node.op == "FULLY_CONNECTED":
        w = param(node.inputs[1])
        b = param(node.inputs[2] if len(node.inputs) > 2 else None)
        return fully_connected(x.reshape(-1, w.shape[1]), w, T[node.inputs[1]].quant.scale, b,
                               T[node.inputs[0]].quant.s).reshape(out_shape)
    if node.op == "ADD":
        return x + act(node.inputs[1])
    if node.op == "AVERAGE_POOL_2D":
        k = (a["filter_height"], a["filter_width"])
        return avg_pool_2d(x, filter_hw=k, stride=(a["stride_h"], a["stride_w"]),
                           pad=_pad_before(x, k, a), out_hw=out_shape[1:3])
    if node.op == "MEAN":
        return mean(x, a["axes"]).reshape(out_shape)
    if node.op == "TRANSPOSE":
        return x.permute(*a["perm"])
    if node.op == "RESHAPE":
        return x.reshape(out_shape)
    if node.op == "PAD":
        return pad(x, a["pad_before"], out_shape)
    if node.op in ("RELU", "RELU6", "RELU_N1_TO_1"):
        return x
    raise ValueError(f"node '{node.name}' ({node.op}): no simulation")


def graph_gradients(fwd, values: dict, specs: dict, labels, trained: dict) -> dict:
    """torch.autograd's gradients of softmax cross-entropy on the dequantized logits of a
    prepared forward graph (a tinyengine IR graph, as tinytrain.graph.forward_graph gives it).

    values: every tensor's int8 value from the int8 forward (te.run_reference(..., keep_all));
    each op's output takes those exact values, its gradient flows through the op's math and
    its clamp's mask (as the kernels' backward).  specs: node name -> grad_rules.OpSpec
    (tinytrain.graph.op_spec); trained: weight or bias tensor name -> None.  Returns tensor
    name -> dL/d(stored integers) of each trained parameter, as NumPy float32."""
    T = fwd.tensors
    real, leaves = {}, {}

    def act(name):
        if name not in real:
            q = T[name].quant
            real[name] = dequantize(values[name], q.zp, q.s)
        return real[name]

    def param(name):
        if name is None:
            return None
        if name not in leaves:
            leaves[name] = tensor(values[name], requires_grad=name in trained)
        return leaves[name]

    for node in fwd.nodes:
        spec = specs[node.name]
        out = node.outputs[0]
        a = spec.attrs
        y = node_forward(node, spec, T, act, param)
        q = T[out].quant
        actual = dequantize(values[out], q.zp, q.s)
        mask = None
        if "act_min" in a:
            v = np.asarray(values[out])
            mask = tensor((v > a["act_min"]) & (v < a["act_max"]))
        real[out] = _straight_through(y, actual, mask)
    logits = real[fwd.outputs[0]]
    loss = softmax_cross_entropy(logits.reshape(-1, logits.shape[-1]), labels)
    loss.backward()
    return {name: leaves[name].grad.numpy().astype(np.float32) for name in trained}
