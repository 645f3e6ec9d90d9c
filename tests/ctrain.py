"""The training kernels (firmware/kernels/te_*_grad_*, te_sgd_update_*) called through ctypes
with tinytrain.reference's signatures, so a test runs a kernel, or a gradient rule's steps
(reference.run_steps(steps, env, C_KERNELS)), exactly as it runs the NumPy reference.
"""
from __future__ import annotations

import ctypes

import numpy as np

from tests.ckernels import load_kernels, ptr
from tinytrain.grad_rules import GradientError

F, I = ctypes.c_float, ctypes.c_int32
NULL = ctypes.c_void_p(None)


def _lib():
    return load_kernels()


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def _i8(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int8)


def _i32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int32)


def _sel(channels, n_all):
    """(pointer, count, keep-alive) of a channel selection; NULL for all."""
    if channels is None:
        return NULL, n_all, None
    c = _i32(channels)
    return ptr(c), len(c), c


def conv_2d_grad_input(grad_out, filter, filter_scale, *, in_hw, stride, pad, packed=None):
    """packed: the filter in the DSP layout (te_conv_2d_grad_input_f32_packed)."""
    g, w, s = _f32(grad_out), _i8(filter), _f32(filter_scale)
    b, oh, ow, oc = g.shape
    _, kh, kw, ic = w.shape
    out = np.empty((b, *in_hw, ic), np.float32)
    fn = _lib().te_conv_2d_grad_input_f32
    if packed is not None:
        fn, w = _lib().te_conv_2d_grad_input_f32_packed, _i8(packed)
    fn(ptr(g), I(b), I(oh), I(ow), I(oc), ptr(w), ptr(s), I(kh),
                                     I(kw), ptr(out), I(in_hw[0]), I(in_hw[1]), I(ic),
                                     I(stride[0]), I(stride[1]), I(pad[0]), I(pad[1]))
    return out


def conv_2d_grad_weight(grad_out, input, input_zero_point, input_scale, filter_scale, *, k_hw,
                        stride, pad, channels=None):
    g, x, s = _f32(grad_out), _i8(input), _f32(filter_scale)
    b, oh, ow, oc = g.shape
    _, ih, iw, ic = x.shape
    sel, n, keep = _sel(channels, oc)
    out = np.empty((n, *k_hw, ic), np.float32)
    _lib().te_conv_2d_grad_weight_f32(ptr(g), I(b), I(oh), I(ow), I(oc), ptr(x), I(ih), I(iw),
                                      I(ic), I(int(input_zero_point)), F(input_scale), ptr(s),
                                      ptr(out), I(k_hw[0]), I(k_hw[1]), sel, I(n), I(stride[0]),
                                      I(stride[1]), I(pad[0]), I(pad[1]))
    del keep
    return out


def conv_2d_grad_bias(grad_out, filter_scale, input_scale):
    g, s = _f32(grad_out), _f32(filter_scale)
    c = g.shape[-1]
    out = np.empty(c, np.float32)
    _lib().te_conv_2d_grad_bias_f32(ptr(g), I(g.size // c), I(c), ptr(s), F(input_scale), ptr(out))
    return out


def depthwise_conv_2d_grad_input(grad_out, filter, filter_scale, *, depth_multiplier, in_hw,
                                 stride, pad, packed=None):
    """packed: the filter in the DSP layout (te_depthwise_conv_2d_grad_input_f32_packed,
    multiplier 1)."""
    g, w, s = _f32(grad_out), _i8(filter), _f32(filter_scale)
    b, oh, ow, oc = g.shape
    _, kh, kw, _ = w.shape
    ic = oc // depth_multiplier
    out = np.empty((b, *in_hw, ic), np.float32)
    tail = (I(in_hw[0]), I(in_hw[1]), I(ic), I(stride[0]), I(stride[1]), I(pad[0]), I(pad[1]))
    if packed is not None:
        assert depth_multiplier == 1
        _lib().te_depthwise_conv_2d_grad_input_f32_packed(
            ptr(g), I(b), I(oh), I(ow), ptr(_i8(packed)), ptr(s), I(kh), I(kw), ptr(out), *tail)
        return out
    _lib().te_depthwise_conv_2d_grad_input_f32(ptr(g), I(b), I(oh), I(ow), ptr(w), ptr(s),
                                               I(depth_multiplier), I(kh), I(kw), ptr(out),
                                               *tail)
    return out


def depthwise_conv_2d_grad_weight(grad_out, input, input_zero_point, input_scale, filter_scale,
                                  *, depth_multiplier, k_hw, stride, pad, channels=None):
    g, x, s = _f32(grad_out), _i8(input), _f32(filter_scale)
    b, oh, ow, oc = g.shape
    _, ih, iw, ic = x.shape
    sel, n, keep = _sel(channels, oc)
    out = np.empty((*k_hw, n), np.float32)
    _lib().te_depthwise_conv_2d_grad_weight_f32(
        ptr(g), I(b), I(oh), I(ow), ptr(x), I(ih), I(iw), I(ic), I(int(input_zero_point)),
        F(input_scale), ptr(s), I(depth_multiplier), ptr(out), I(k_hw[0]), I(k_hw[1]), sel, I(n),
        I(stride[0]), I(stride[1]), I(pad[0]), I(pad[1]))
    del keep
    return out


def fully_connected_grad_input(grad_out, weights, weight_scale, *, in_shape=None):
    w, s = _i8(weights), _f32(weight_scale)
    out_f, in_f = w.shape
    g = _f32(grad_out).reshape(-1, out_f)
    out = np.empty((g.shape[0], in_f), np.float32)
    _lib().te_fully_connected_grad_input_f32(ptr(g), ptr(w), ptr(s), ptr(out), I(g.shape[0]),
                                             I(in_f), I(out_f))
    return out if in_shape is None else out.reshape(in_shape)


def fully_connected_grad_weight(grad_out, input, input_zero_point, input_scale, weight_scale, *,
                                channels=None):
    s = _f32(weight_scale)
    out_f = s.size
    g = _f32(grad_out).reshape(-1, out_f)
    x = _i8(input).reshape(g.shape[0], -1)
    sel, n, keep = _sel(channels, out_f)
    out = np.empty((n, x.shape[1]), np.float32)
    _lib().te_fully_connected_grad_weight_f32(ptr(g), ptr(x), I(int(input_zero_point)),
                                              F(input_scale), ptr(s), ptr(out), I(g.shape[0]),
                                              I(x.shape[1]), I(out_f), sel, I(n))
    del keep
    return out


def avg_pool_2d_grad_input(grad_out, *, in_hw, filter_hw, stride, pad):
    g = _f32(grad_out)
    b, oh, ow, c = g.shape
    out = np.empty((b, *in_hw, c), np.float32)
    _lib().te_avg_pool_2d_grad_input_f32(ptr(g), I(b), I(oh), I(ow), I(c), ptr(out), I(in_hw[0]),
                                         I(in_hw[1]), I(filter_hw[0]), I(filter_hw[1]),
                                         I(stride[0]), I(stride[1]), I(pad[0]), I(pad[1]))
    return out


def mean_index_spaces(in_shape, axes):
    """te_mean_*'s two strided index spaces (kept dims, reduced dims) over a row-major input."""
    strides = np.cumprod((list(in_shape[1:]) + [1])[::-1])[::-1]
    keep = [d for d in range(len(in_shape)) if d not in axes] or None
    red = sorted(axes)
    def space(dims):
        if dims is None:
            return [1], [0]
        return [int(in_shape[d]) for d in dims], [int(strides[d]) for d in dims]
    return space(keep), space(red)


def mean_grad_input(grad_out, *, in_shape, axes):
    if len(in_shape) > 6:
        raise GradientError("MEAN: at most 6 dimensions")
    (ks, kst), (rs, rst) = mean_index_spaces(in_shape, set(axes))
    g = _f32(grad_out)
    out = np.empty(in_shape, np.float32)
    arrs = [_i32(a) for a in (ks, kst, rs, rst)]
    _lib().te_mean_grad_input_f32(ptr(g), ptr(out), I(len(ks)), ptr(arrs[0]), ptr(arrs[1]),
                                  I(len(rs)), ptr(arrs[2]), ptr(arrs[3]), I(int(np.prod(rs))))
    return out


def _dims5(shape):
    return _i32([1] * (5 - len(shape)) + list(shape))


def pad_grad_input(grad_out, *, in_shape, pad_before):
    g = _f32(grad_out)
    out = np.empty(in_shape, np.float32)
    ind, outd = _dims5(in_shape), _dims5(g.shape)
    before = _i32([0] * (5 - len(pad_before)) + list(pad_before))
    _lib().te_pad_grad_input_f32(ptr(g), ptr(out), ptr(ind), ptr(outd), ptr(before))
    return out


def reshape_grad_input(grad_out, *, in_shape):
    g = _f32(grad_out)
    out = np.empty(in_shape, np.float32)
    _lib().te_reshape_grad_input_f32(ptr(g), ptr(out), I(g.size))
    return out


def transpose_grad_input(grad_out, *, perm):
    g = _f32(grad_out)
    k = 5 - len(perm)
    in_shape = tuple(g.shape[list(perm).index(a)] for a in range(len(perm)))
    out = np.empty(in_shape, np.float32)
    perm5 = _i32(list(range(k)) + [p + k for p in perm])
    _lib().te_transpose_grad_input_f32(ptr(g), ptr(out), ptr(_dims5(in_shape)), ptr(perm5))
    return out


def clamp_grad_mask(output, *, act_min, act_max):
    q = _i8(output).reshape(-1)
    mask = np.empty((q.size + 7) // 8, np.uint8)
    _lib().te_clamp_grad_mask_s8(ptr(q), I(q.size), I(act_min), I(act_max), ptr(mask))
    return mask


def clamp_grad_input(grad_out, mask):
    g = _f32(grad_out)
    m = np.ascontiguousarray(mask, np.uint8)
    out = np.empty_like(g)
    _lib().te_clamp_grad_input_f32(ptr(g), ptr(m), I(g.size), ptr(out))
    return out


def softmax_cross_entropy_grad(logits, zero_point, scale, labels):
    q, lab = _i8(logits), _i32(labels)
    grad = np.empty(q.shape, np.float32)
    fn = _lib().te_softmax_cross_entropy_grad_f32
    fn.restype = F
    loss = fn(ptr(q), I(q.shape[0]), I(q.shape[1]), I(int(zero_point)), F(scale), ptr(lab),
              ptr(grad))
    return np.float32(loss), grad


def _opt_f32(a):
    return (NULL, None) if a is None else (lambda x: (ptr(x), x))(_f32(a))


def sgd_update_s8(weights, grad, grad_scale, velocity, *, lr, momentum, layout, channels=None):
    outer, n_all, inner = layout
    w = _i8(weights).copy()
    g = _f32(grad)
    sel, n, keep = _sel(channels, n_all)
    gs, gs_keep = _opt_f32(grad_scale)
    vel = None if velocity is None else _f32(velocity).copy()
    _lib().te_sgd_update_s8(ptr(w), I(outer), I(n_all), I(inner), sel, I(n), ptr(g), gs, F(lr),
                            F(momentum), NULL if vel is None else ptr(vel))
    del keep, gs_keep
    return w, vel


def sgd_update_s32(bias, grad, grad_scale, velocity, *, lr, momentum):
    b = _i32(bias).copy()
    g = _f32(grad)
    gs, gs_keep = _opt_f32(grad_scale)
    vel = None if velocity is None else _f32(velocity).copy()
    _lib().te_sgd_update_s32(ptr(b), I(b.size), ptr(g), gs, F(lr), F(momentum),
                             NULL if vel is None else ptr(vel))
    del gs_keep
    return b, vel


def exp_f32(x: float) -> np.float32:
    fn = _lib().te_exp_f32
    fn.restype, fn.argtypes = F, [F]
    return np.float32(fn(float(x)))


def log_f32(x: float) -> np.float32:
    fn = _lib().te_log_f32
    fn.restype, fn.argtypes = F, [F]
    return np.float32(fn(float(x)))


C_KERNELS = {
    "te_conv_2d_grad_input_f32": conv_2d_grad_input,
    "te_conv_2d_grad_weight_f32": conv_2d_grad_weight,
    "te_conv_2d_grad_bias_f32": conv_2d_grad_bias,
    "te_depthwise_conv_2d_grad_input_f32": depthwise_conv_2d_grad_input,
    "te_depthwise_conv_2d_grad_weight_f32": depthwise_conv_2d_grad_weight,
    "te_fully_connected_grad_input_f32": fully_connected_grad_input,
    "te_fully_connected_grad_weight_f32": fully_connected_grad_weight,
    "te_avg_pool_2d_grad_input_f32": avg_pool_2d_grad_input,
    "te_mean_grad_input_f32": mean_grad_input,
    "te_pad_grad_input_f32": pad_grad_input,
    "te_reshape_grad_input_f32": reshape_grad_input,
    "te_transpose_grad_input_f32": transpose_grad_input,
    "te_clamp_grad_mask_s8": clamp_grad_mask,
    "te_clamp_grad_input_f32": clamp_grad_input,
    "te_softmax_cross_entropy_grad_f32": softmax_cross_entropy_grad,
    "te_sgd_update_s8": sgd_update_s8,
    "te_sgd_update_s32": sgd_update_s32,
}
