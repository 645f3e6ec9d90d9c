"""The NumPy reference of every training kernel: the executable definition of the backward.

One function per C kernel in firmware/kernels/ (registered under the kernel's name in
KERNELS), with the kernel's arguments in NumPy form: arrays carry their shapes, the rest are
keyword arguments (the `args` of a grad_rules.Step).  Gradients are computed in float64, the
mathematically exact value the float32 kernels approximate (tests bound the difference by
the float32 rounding error of each sum); the update kernels are defined in float32,
element by element, exactly as the C kernels compute them.

Conventions (as the forward kernels'): activations NHWC, CONV_2D / FULLY_CONNECTED weights
OHWI / [out, in], DEPTHWISE_CONV_2D weights [1, k_h, k_w, C * M]; real value of an int8
tensor = scale * (q - zero_point); weights symmetric, per output channel.  Gradients of
activations are with respect to their real values, gradients of parameters with respect to
the stored integers (dL/dq = scale * dL/dreal), as in "On-Device Training Under 256KB
Memory" (Lin et al., 2022).
"""
from __future__ import annotations

import numpy as np

from .grad_rules import ALIAS

KERNELS: dict = {}


def run_steps(steps, env: dict, kernels: dict = KERNELS) -> dict:
    """Execute grad_rules Steps in order on env (value name -> array), with the kernels'
    references (or any dict of functions with their signatures, e.g. the C kernels through
    ctypes); a None among a step's reads passes None.  Returns env."""
    for step in steps:
        args = [None if r is None else env[r] for r in step.reads]
        out = args[0] if step.kernel == ALIAS else kernels[step.kernel](*args, **step.args)
        outs = out if len(step.writes) > 1 else (out,)
        for name, value in zip(step.writes, outs):
            if name is not None:
                env[name] = value
    return env


def kernel(name: str):
    """Register the reference of C kernel `name`."""
    def register(fn):
        if name in KERNELS:
            raise ValueError(f"kernel {name} registered twice")
        KERNELS[name] = fn
        fn.kernel = name
        return fn
    return register


def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _scatter_buffer(in_hw, out_hw, k_hw, stride, pad):
    """Height and width of a buffer holding every tap position oy * s + ky (input row
    oy * s + ky - pad_top sits at buffer row iy + pad_top)."""
    return tuple(max(in_hw[i] + pad[i], (out_hw[i] - 1) * stride[i] + k_hw[i]) for i in range(2))


def _taps(out_hw, stride, ky, kx):
    """Buffer slices of tap (ky, kx) for every output pixel."""
    return (slice(ky, ky + (out_hw[0] - 1) * stride[0] + 1, stride[0]),
            slice(kx, kx + (out_hw[1] - 1) * stride[1] + 1, stride[1]))


def _padded_input(x, zero_point, out_hw, k_hw, stride, pad):
    """(x - zero_point) in float64 inside a zero border (the padding's real value is 0)."""
    b, h, w, c = x.shape
    hp, wp = _scatter_buffer((h, w), out_hw, k_hw, stride, pad)
    buf = np.zeros((b, hp, wp, c))
    buf[:, pad[0]:pad[0] + h, pad[1]:pad[1] + w] = _f64(x) - zero_point
    return buf


def _selected(channels, n_all):
    return np.arange(n_all) if channels is None else np.asarray(channels, dtype=np.int64)


# -- CONV_2D -------------------------------------------------------------------------------
@kernel("te_conv_2d_grad_input_f32")
def conv_2d_grad_input(grad_out, filter, filter_scale, *, in_hw, stride, pad):
    """dL/dx of y = conv(x, filter_scale * filter); pad = (pad_top, pad_left)."""
    g = _f64(grad_out) * _f64(filter_scale)
    b, oh, ow, _ = g.shape
    _, kh, kw, ic = filter.shape
    hp, wp = _scatter_buffer(in_hw, (oh, ow), (kh, kw), stride, pad)
    buf = np.zeros((b, hp, wp, ic))
    w = _f64(filter)
    for ky in range(kh):
        for kx in range(kw):
            sy, sx = _taps((oh, ow), stride, ky, kx)
            buf[:, sy, sx] += np.einsum("bhwo,oc->bhwc", g, w[:, ky, kx, :])
    return buf[:, pad[0]:pad[0] + in_hw[0], pad[1]:pad[1] + in_hw[1]]


@kernel("te_conv_2d_grad_weight_f32")
def conv_2d_grad_weight(grad_out, input, input_zero_point, input_scale, filter_scale, *,
                        k_hw, stride, pad, channels=None):
    """dL/dfilter (stored int8 values) of the selected output channels: [n, k_h, k_w, in_c]."""
    sel = _selected(channels, grad_out.shape[-1])
    g = _f64(grad_out)[..., sel]
    oh, ow = g.shape[1:3]
    xp = _padded_input(input, input_zero_point, (oh, ow), k_hw, stride, pad)
    out = np.zeros((len(sel), *k_hw, input.shape[-1]))
    for ky in range(k_hw[0]):
        for kx in range(k_hw[1]):
            sy, sx = _taps((oh, ow), stride, ky, kx)
            out[:, ky, kx, :] = np.einsum("bhwo,bhwc->oc", g, xp[:, sy, sx])
    return out * (_f64(filter_scale)[sel] * input_scale)[:, None, None, None]


@kernel("te_conv_2d_grad_bias_f32")
def conv_2d_grad_bias(grad_out, filter_scale, input_scale):
    """dL/dbias (stored int32 values) of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED."""
    g = _f64(grad_out).reshape(-1, grad_out.shape[-1])
    return g.sum(axis=0) * _f64(filter_scale) * input_scale


# -- DEPTHWISE_CONV_2D -----------------------------------------------------------------------
@kernel("te_depthwise_conv_2d_grad_input_f32")
def depthwise_conv_2d_grad_input(grad_out, filter, filter_scale, *, depth_multiplier, in_hw,
                                 stride, pad):
    g = _f64(grad_out) * _f64(filter_scale)
    b, oh, ow, oc = g.shape
    _, kh, kw, _ = filter.shape
    ic = oc // depth_multiplier
    hp, wp = _scatter_buffer(in_hw, (oh, ow), (kh, kw), stride, pad)
    buf = np.zeros((b, hp, wp, ic))
    w = _f64(filter)[0]
    for ky in range(kh):
        for kx in range(kw):
            sy, sx = _taps((oh, ow), stride, ky, kx)
            t = (g * w[ky, kx]).reshape(b, oh, ow, ic, depth_multiplier).sum(axis=-1)
            buf[:, sy, sx] += t
    return buf[:, pad[0]:pad[0] + in_hw[0], pad[1]:pad[1] + in_hw[1]]


@kernel("te_depthwise_conv_2d_grad_weight_f32")
def depthwise_conv_2d_grad_weight(grad_out, input, input_zero_point, input_scale, filter_scale,
                                  *, depth_multiplier, k_hw, stride, pad, channels=None):
    """dL/dfilter of the selected channels: [k_h, k_w, n]."""
    sel = _selected(channels, grad_out.shape[-1])
    g = _f64(grad_out)[..., sel]
    oh, ow = g.shape[1:3]
    xp = _padded_input(input, input_zero_point, (oh, ow), k_hw, stride, pad)
    xp = xp[..., sel // depth_multiplier]
    out = np.zeros((*k_hw, len(sel)))
    for ky in range(k_hw[0]):
        for kx in range(k_hw[1]):
            sy, sx = _taps((oh, ow), stride, ky, kx)
            out[ky, kx] = np.einsum("bhwc,bhwc->c", g, xp[:, sy, sx])
    return out * (_f64(filter_scale)[sel] * input_scale)


# -- FULLY_CONNECTED -------------------------------------------------------------------------
@kernel("te_fully_connected_grad_input_f32")
def fully_connected_grad_input(grad_out, weights, weight_scale, *, in_shape=None):
    """dL/dx, in the input's shape (rows of in_features)."""
    g = (_f64(grad_out) * _f64(weight_scale)) @ _f64(weights)
    return g if in_shape is None else g.reshape(in_shape)


@kernel("te_fully_connected_grad_weight_f32")
def fully_connected_grad_weight(grad_out, input, input_zero_point, input_scale, weight_scale, *,
                                channels=None):
    """dL/dweights of the selected outputs: [n, in_features]."""
    sel = _selected(channels, grad_out.shape[-1])
    g = _f64(grad_out).reshape(-1, grad_out.shape[-1])[:, sel]
    x = _f64(input).reshape(g.shape[0], -1)
    out = g.T @ (x - input_zero_point)
    return out * (_f64(weight_scale)[sel] * input_scale)[:, None]


# -- data movement and pooling ---------------------------------------------------------------
@kernel("te_avg_pool_2d_grad_input_f32")
def avg_pool_2d_grad_input(grad_out, *, in_hw, filter_hw, stride, pad):
    """Each output pixel's gradient shared equally by its window's in-bounds pixels."""
    g = _f64(grad_out)
    b, oh, ow, c = g.shape
    out = np.zeros((b, *in_hw, c))
    for oy in range(oh):
        y0 = max(0, oy * stride[0] - pad[0])
        y1 = min(in_hw[0], oy * stride[0] - pad[0] + filter_hw[0])
        for ox in range(ow):
            x0 = max(0, ox * stride[1] - pad[1])
            x1 = min(in_hw[1], ox * stride[1] - pad[1] + filter_hw[1])
            out[:, y0:y1, x0:x1] += (g[:, oy, ox] / ((y1 - y0) * (x1 - x0)))[:, None, None]
    return out


@kernel("te_mean_grad_input_f32")
def mean_grad_input(grad_out, *, in_shape, axes):
    """grad_out (the kept dimensions, in order) spread evenly over the reduced axes."""
    axes = tuple(sorted(a % len(in_shape) for a in axes))
    count = int(np.prod([in_shape[a] for a in axes]))
    keep = [1 if d in axes else n for d, n in enumerate(in_shape)]
    g = _f64(grad_out).reshape(keep) / count
    return np.broadcast_to(g, in_shape).copy()


@kernel("te_pad_grad_input_f32")
def pad_grad_input(grad_out, *, in_shape, pad_before):
    idx = tuple(slice(p, p + n) for p, n in zip(pad_before, in_shape))
    return _f64(grad_out)[idx].copy()


@kernel("te_reshape_grad_input_f32")
def reshape_grad_input(grad_out, *, in_shape):
    return _f64(grad_out).reshape(in_shape)


@kernel("te_transpose_grad_input_f32")
def transpose_grad_input(grad_out, *, perm):
    """The forward moves input axis perm[d] to output axis d; this moves it back."""
    return np.transpose(_f64(grad_out), np.argsort(perm)).copy()


# -- the clamp's mask -------------------------------------------------------------------------
@kernel("te_clamp_grad_mask_s8")
def clamp_grad_mask(output, *, act_min, act_max):
    """Bit i (little-endian within each byte) = act_min < output[i] < act_max."""
    q = np.asarray(output).reshape(-1).astype(np.int32)
    return np.packbits((q > act_min) & (q < act_max), bitorder="little")


@kernel("te_clamp_grad_input_f32")
def clamp_grad_input(grad_out, mask):
    g = _f64(grad_out)
    bits = np.unpackbits(np.asarray(mask, np.uint8), count=g.size, bitorder="little")
    return np.where(bits.reshape(g.shape) != 0, g, 0.0)


# -- loss -------------------------------------------------------------------------------------
@kernel("te_softmax_cross_entropy_grad_f32")
def softmax_cross_entropy_grad(logits, zero_point, scale, labels):
    """(mean loss, dL/dlogits) of softmax cross-entropy on the dequantized logits."""
    x = scale * (_f64(logits) - zero_point)
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(x.shape[0])
    loss = np.log(s[:, 0]) - x[rows, labels]
    grad = e / s
    grad[rows, labels] -= 1.0
    return loss.mean(), grad / x.shape[0]


# -- SGD updates (float32, element by element as the C kernels) -------------------------------
def _momentum_step(g, grad_scale, momentum, velocity):
    """QAS scaling then torch.optim.SGD's momentum buffer; returns (step direction, velocity)."""
    g = np.asarray(g, np.float32)
    if grad_scale is not None:
        g = g * grad_scale
    if velocity is None:
        return g, None
    v = np.float32(momentum) * np.asarray(velocity, np.float32) + g
    return v, v


@kernel("te_sgd_update_s8")
def sgd_update_s8(weights, grad, grad_scale, velocity, *, lr, momentum, layout, channels=None):
    """(new int8 weights, new velocity).  layout = (outer, n_all, inner): the weights viewed
    as [outer, channels, inner]; grad and velocity [outer, n_selected, inner] (velocity None:
    plain SGD); grad_scale [n_all] QAS factors or None."""
    outer, n_all, inner = layout
    sel = _selected(channels, n_all)
    w = np.asarray(weights, np.int8).reshape(outer, n_all, inner).copy()
    g = np.asarray(grad, np.float32).reshape(outer, len(sel), inner)
    gs = None if grad_scale is None else np.asarray(grad_scale, np.float32)[sel][None, :, None]
    vel = None if velocity is None else np.asarray(velocity, np.float32).reshape(g.shape)
    d, vel = _momentum_step(g, gs, momentum, vel)
    v = w[:, sel].astype(np.float32) + np.float32(-lr) * d
    w[:, sel] = np.rint(np.clip(v, np.float32(-127), np.float32(127))).astype(np.int8)
    return w.reshape(np.shape(weights)), vel


@kernel("te_sgd_update_s32")
def sgd_update_s32(bias, grad, grad_scale, velocity, *, lr, momentum):
    """(new int32 biases, new velocity): the float32 step rounded (ties to even) on its own,
    added exactly and saturated to int32."""
    gs = None if grad_scale is None else np.asarray(grad_scale, np.float32)
    d, vel = _momentum_step(grad, gs, momentum, velocity)
    step = np.rint(np.float32(-lr) * d).astype(np.float64)
    new = np.clip(np.asarray(bias, np.int64) + np.clip(step, -2.0**32, 2.0**32).astype(np.int64),
                  -2**31, 2**31 - 1)
    return new.astype(np.int32), vel
