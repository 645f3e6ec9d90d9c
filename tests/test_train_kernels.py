"""Training kernels (firmware/kernels/te_*_grad_*, te_sgd_update_*) and gradient rules.

Every backward kernel, called through ctypes (tests/ctrain.py), is compared with its NumPy
reference (tinytrain/reference.py, float64: the exact value) and PyTorch autograd on the
dequantized forward (tinytrain/torch_sim.py, float32) is compared with the same reference,
on seeded random shapes: kernels 1/3/5/7, strides 1/2, SAME / VALID / explicit padding,
depth multipliers 1/2, odd sizes, channel selections.

Tolerance (float32 gradients): each gradient element is a sum of n products; any float32
evaluation of it is within (n + 4) * 2^-24 * A of the exact value, where A is the same sum of
the products' absolute values (the reference run on absolute inputs) and the 4 covers the
roundings of each product (scale * value * value).  assert_close checks
    |actual - exact| <= (n + 4) * 2^-23 * A   (twice the bound)
elementwise, for the C kernels and for torch alike.  Masks, data movement and the SGD
updates (defined in float32, element by element) must match the reference exactly; exp/log
within 1 ulp of the correctly rounded value.  A QEMU test checks that the kernels give the
same bits on a Cortex-M7 (stm32f746 flags) as on the host.
"""
from __future__ import annotations

import itertools
import subprocess
import zlib
from pathlib import Path

import jinja2
import numpy as np
import pytest
import torch

from tests import ctrain
from tests.ctrain import C_KERNELS
from tinytrain import grad_rules as gr
from tinytrain import reference as ref
from tinytrain import torch_sim as ts


def _rng(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def assert_close(actual, exact, absref, n_terms: int, what: str):
    actual = np.asarray(actual, np.float64)
    bound = (n_terms + 4) * 2.0**-23 * np.asarray(absref, np.float64)
    assert actual.shape == exact.shape, f"{what}: shape {actual.shape} != {exact.shape}"
    err = np.abs(actual - exact)
    bad = err > bound
    assert not bad.any(), (f"{what}: {int(bad.sum())} elements off, worst error "
                           f"{err[bad].max():.3g} > bound {bound[bad][err[bad].argmax()]:.3g}")


def _grad_out(rng, shape, zero_fraction=0.2):
    """A float32 output gradient with some exact zeros (as after a ReLU mask)."""
    g = rng.standard_normal(shape).astype(np.float32)
    g[rng.random(shape) < zero_fraction] = 0.0
    return g


# -- window cases -----------------------------------------------------------------------------
PADDINGS = ("SAME", "VALID", "explicit")
WINDOW_CASES = list(itertools.product((1, 3, 5, 7), (1, 2), PADDINGS))


def _window_case(rng, k, stride, padding):
    """(in_hw, k_hw, stride, padding attr, pad (top, left), out_hw) with odd sizes."""
    k_hw = (k, k if k == 1 else int(rng.choice([k, k - 2])))      # some non-square kernels
    in_hw = tuple(int(k_hw[a] + rng.integers(0, 6)) for a in range(2))
    st = (stride, int(rng.choice([1, stride])))
    if padding == "explicit":
        padding = tuple(int(rng.integers(0, k_hw[a // 2])) if k_hw[a // 2] > 1 else 0
                        for a in range(4))
    pads, outs = zip(*(gr.window_padding(in_hw[a], k_hw[a], st[a], padding, a) for a in range(2)))
    return in_hw, k_hw, st, padding, tuple(pads), tuple(outs)


def _quant_input(rng, shape):
    x = rng.integers(-128, 128, size=shape).astype(np.int8)
    return x, int(rng.integers(-20, 20)), float(0.02 + 0.03 * rng.random())


def _weights(rng, shape, n_channels):
    w = rng.integers(-127, 128, size=shape).astype(np.int8)
    s = (0.002 + 0.01 * rng.random(n_channels)).astype(np.float32)
    return w, s


def _selection(rng, n):
    """None (all) or a random subset of the channels, in random order."""
    if n == 1 or rng.random() < 0.5:
        return None
    return tuple(int(c) for c in rng.permutation(n)[:int(rng.integers(1, n))])


def _torch_grads(y, g, *leaves):
    y.backward(torch.tensor(g))
    return [leaf.grad.numpy().astype(np.float64) for leaf in leaves]


@pytest.mark.parametrize("k,stride,padding", WINDOW_CASES)
def test_conv_2d_grads(k, stride, padding):
    rng = _rng("conv", k, stride, padding)
    in_hw, k_hw, st, pad_attr, pad, out_hw = _window_case(rng, k, stride, padding)
    b, ic, oc = int(rng.integers(1, 3)), int(rng.integers(1, 6)), int(rng.integers(1, 7))
    x, zp, sx = _quant_input(rng, (b, *in_hw, ic))
    w, sw = _weights(rng, (oc, *k_hw, ic), oc)
    bias = rng.integers(-500, 500, size=oc).astype(np.int32)
    g = _grad_out(rng, (b, *out_hw, oc))
    sel = _selection(rng, oc)
    win = {"stride": st, "pad": pad}

    # torch: the dequantized forward, autograd for all three gradients
    xt, wt, bt = ts.dequantize(x, zp, sx, True), ts.tensor(w, True), ts.tensor(bias, True)
    y = ts.conv_2d(xt, wt, sw, bt, sx, stride=st, pad=pad, out_hw=out_hw)
    t_x, t_w, t_b = _torch_grads(y, g, xt, wt, bt)

    exact = ref.conv_2d_grad_input(g, w, sw, in_hw=in_hw, **win)
    absref = ref.conv_2d_grad_input(np.abs(g), np.abs(w), sw, in_hw=in_hw, **win)
    n = k_hw[0] * k_hw[1] * oc
    assert_close(ctrain.conv_2d_grad_input(g, w, sw, in_hw=in_hw, **win), exact, absref, n, "C dx")
    assert_close(t_x, exact, absref, n, "torch dx")

    xa = np.abs(x.astype(np.int32) - zp)
    exact = ref.conv_2d_grad_weight(g, x, zp, sx, sw, k_hw=k_hw, channels=sel, **win)
    absref = ref.conv_2d_grad_weight(np.abs(g), xa, 0, sx, sw, k_hw=k_hw, channels=sel, **win)
    n = b * out_hw[0] * out_hw[1]
    got = ctrain.conv_2d_grad_weight(g, x, zp, sx, sw, k_hw=k_hw, channels=sel, **win)
    assert_close(got, exact, absref, n, "C dw")
    assert_close(t_w[list(sel) if sel else slice(None)], exact, absref, n, "torch dw")

    exact = ref.conv_2d_grad_bias(g, sw, sx)
    absref = ref.conv_2d_grad_bias(np.abs(g), sw, sx)
    assert_close(ctrain.conv_2d_grad_bias(g, sw, sx), exact, absref, n, "C db")
    assert_close(t_b, exact, absref, n, "torch db")


@pytest.mark.parametrize("k,stride,padding", WINDOW_CASES)
@pytest.mark.parametrize("m", (1, 2))
def test_depthwise_conv_2d_grads(k, stride, padding, m):
    rng = _rng("dw", k, stride, padding, m)
    in_hw, k_hw, st, pad_attr, pad, out_hw = _window_case(rng, k, stride, padding)
    b, ic = int(rng.integers(1, 3)), int(rng.integers(1, 8))
    oc = ic * m
    x, zp, sx = _quant_input(rng, (b, *in_hw, ic))
    w, sw = _weights(rng, (1, *k_hw, oc), oc)
    bias = rng.integers(-500, 500, size=oc).astype(np.int32)
    g = _grad_out(rng, (b, *out_hw, oc))
    sel = _selection(rng, oc)
    win = {"stride": st, "pad": pad, "depth_multiplier": m}

    xt, wt, bt = ts.dequantize(x, zp, sx, True), ts.tensor(w, True), ts.tensor(bias, True)
    y = ts.depthwise_conv_2d(xt, wt, sw, bt, sx, out_hw=out_hw, **win)
    t_x, t_w, t_b = _torch_grads(y, g, xt, wt, bt)

    exact = ref.depthwise_conv_2d_grad_input(g, w, sw, in_hw=in_hw, **win)
    absref = ref.depthwise_conv_2d_grad_input(np.abs(g), np.abs(w), sw, in_hw=in_hw, **win)
    n = k_hw[0] * k_hw[1] * m
    got = ctrain.depthwise_conv_2d_grad_input(g, w, sw, in_hw=in_hw, **win)
    assert_close(got, exact, absref, n, "C dx")
    assert_close(t_x, exact, absref, n, "torch dx")

    xa = np.abs(x.astype(np.int32) - zp)
    exact = ref.depthwise_conv_2d_grad_weight(g, x, zp, sx, sw, k_hw=k_hw, channels=sel, **win)
    absref = ref.depthwise_conv_2d_grad_weight(np.abs(g), xa, 0, sx, sw, k_hw=k_hw, channels=sel,
                                               **win)
    n = b * out_hw[0] * out_hw[1]
    got = ctrain.depthwise_conv_2d_grad_weight(g, x, zp, sx, sw, k_hw=k_hw, channels=sel, **win)
    assert_close(got, exact, absref, n, "C dw")
    assert_close(t_w[0][..., list(sel) if sel else slice(None)], exact, absref, n, "torch dw")
    assert_close(t_b, ref.conv_2d_grad_bias(g, sw, sx), ref.conv_2d_grad_bias(np.abs(g), sw, sx),
                 n, "torch db")


@pytest.mark.parametrize("batch,in_f,out_f", [(1, 1, 1), (1, 7, 3), (3, 33, 10), (2, 64, 17),
                                              (1, 250, 5), (4, 9, 2)])
def test_fully_connected_grads(batch, in_f, out_f):
    rng = _rng("fc", batch, in_f, out_f)
    x, zp, sx = _quant_input(rng, (batch, in_f))
    w, sw = _weights(rng, (out_f, in_f), out_f)
    bias = rng.integers(-500, 500, size=out_f).astype(np.int32)
    g = _grad_out(rng, (batch, out_f))
    sel = _selection(rng, out_f)

    xt, wt, bt = ts.dequantize(x, zp, sx, True), ts.tensor(w, True), ts.tensor(bias, True)
    t_x, t_w, t_b = _torch_grads(ts.fully_connected(xt, wt, sw, bt, sx), g, xt, wt, bt)

    exact, absref = ref.fully_connected_grad_input(g, w, sw), ref.fully_connected_grad_input(
        np.abs(g), np.abs(w), sw)
    assert_close(ctrain.fully_connected_grad_input(g, w, sw), exact, absref, out_f, "C dx")
    assert_close(t_x, exact, absref, out_f, "torch dx")
    xa = np.abs(x.astype(np.int32) - zp)
    exact = ref.fully_connected_grad_weight(g, x, zp, sx, sw, channels=sel)
    absref = ref.fully_connected_grad_weight(np.abs(g), xa, 0, sx, sw, channels=sel)
    got = ctrain.fully_connected_grad_weight(g, x, zp, sx, sw, channels=sel)
    assert_close(got, exact, absref, batch, "C dw")
    assert_close(t_w[list(sel) if sel else slice(None)], exact, absref, batch, "torch dw")
    assert_close(ctrain.conv_2d_grad_bias(g, sw, sx), ref.conv_2d_grad_bias(g, sw, sx),
                 ref.conv_2d_grad_bias(np.abs(g), sw, sx), batch, "C db")
    assert_close(t_b, ref.conv_2d_grad_bias(g, sw, sx), ref.conv_2d_grad_bias(np.abs(g), sw, sx),
                 batch, "torch db")


@pytest.mark.parametrize("k,stride,padding", WINDOW_CASES)
def test_avg_pool_2d_grad_input(k, stride, padding):
    rng = _rng("avg", k, stride, padding)
    in_hw, k_hw, st, pad_attr, pad, out_hw = _window_case(rng, k, stride, padding)
    b, c = int(rng.integers(1, 3)), int(rng.integers(1, 6))
    g = _grad_out(rng, (b, *out_hw, c))
    args = {"in_hw": in_hw, "filter_hw": k_hw, "stride": st, "pad": pad}
    x = ts.tensor(rng.standard_normal((b, *in_hw, c)), True)
    (t_x,) = _torch_grads(ts.avg_pool_2d(x, filter_hw=k_hw, stride=st, pad=pad, out_hw=out_hw),
                          g, x)
    exact = ref.avg_pool_2d_grad_input(g, **args)
    absref = ref.avg_pool_2d_grad_input(np.abs(g), **args)
    n = k_hw[0] * k_hw[1]
    assert_close(ctrain.avg_pool_2d_grad_input(g, **args), exact, absref, n, "C dx")
    assert_close(t_x, exact, absref, n, "torch dx")


@pytest.mark.parametrize("shape,axes", [((1, 5, 7, 3), (1, 2)), ((2, 3, 3, 4), (1, 2)),
                                        ((3, 5, 2), (0,)), ((2, 3, 4), (0, 2)),
                                        ((1, 1, 9, 6), (3,)), ((4, 6), (0, 1))])
def test_mean_grad_input(shape, axes):
    rng = _rng("mean", shape, axes)
    out_shape = tuple(n for d, n in enumerate(shape) if d not in axes) or (1,)
    g = _grad_out(rng, out_shape)
    x = ts.tensor(rng.standard_normal(shape), True)
    (t_x,) = _torch_grads(ts.mean(x, axes).reshape(out_shape), g, x)
    exact = ref.mean_grad_input(g, in_shape=shape, axes=axes)
    absref = ref.mean_grad_input(np.abs(g), in_shape=shape, axes=axes)
    assert_close(ctrain.mean_grad_input(g, in_shape=shape, axes=axes), exact, absref, 1, "C dx")
    assert_close(t_x, exact, absref, 1, "torch dx")


@pytest.mark.parametrize("shape,before,after", [((1, 5, 7, 3), (0, 1, 2, 0), (0, 1, 0, 0)),
                                                ((2, 3, 3, 1), (0, 0, 3, 2), (1, 2, 0, 1)),
                                                ((7, 5), (2, 0), (0, 3)), ((1, 2, 3, 4, 5), (0, 1, 0, 2, 1), (1, 0, 2, 0, 1))])
def test_pad_and_reshape_grad_input(shape, before, after):
    rng = _rng("pad", shape, before)
    out_shape = tuple(n + b + a for n, b, a in zip(shape, before, after))
    g = _grad_out(rng, out_shape)
    x = ts.tensor(rng.standard_normal(shape), True)
    (t_x,) = _torch_grads(ts.pad(x, before, out_shape), g, x)
    exact = ref.pad_grad_input(g, in_shape=shape, pad_before=before)
    np.testing.assert_array_equal(ctrain.pad_grad_input(g, in_shape=shape, pad_before=before), exact)
    np.testing.assert_array_equal(t_x, exact)
    # RESHAPE: a copy in row-major order
    flat = ctrain.reshape_grad_input(g, in_shape=(int(np.prod(out_shape)),))
    np.testing.assert_array_equal(flat, ref.reshape_grad_input(g, in_shape=flat.shape))
    np.testing.assert_array_equal(flat, g.reshape(-1))


@pytest.mark.parametrize("n,bounds", [(1, (-128, 127)), (8, (-5, 127)), (37, (-20, 50)),
                                      (64, (-128, -1)), (203, (3, 3 + 40))])
def test_clamp_mask(n, bounds):
    """The 1-bit mask packed from the int8 output, applied to the gradient: the gradient of
    torch's hardtanh on the dequantized output (0 on and outside the bounds)."""
    rng = _rng("mask", n, bounds)
    lo, hi = bounds
    q = rng.integers(lo, hi + 1, size=n).astype(np.int8)
    q[rng.random(n) < 0.2] = lo
    q[rng.random(n) < 0.2] = hi
    q[0] = lo                                       # on a bound: clamped
    q[-1] = (lo + hi) // 2 if n > 1 else lo         # inside (lo < hi - 1 in every case)
    mask = ctrain.clamp_grad_mask(q, act_min=lo, act_max=hi)
    np.testing.assert_array_equal(mask, ref.clamp_grad_mask(q, act_min=lo, act_max=hi))
    assert mask.size == (n + 7) // 8
    assert (np.unpackbits(mask, bitorder="little")[n:] == 0).all(), "bits past n must be 0"
    g = _grad_out(rng, (n,), 0.0)
    got = ctrain.clamp_grad_input(g, mask)
    np.testing.assert_array_equal(got, ref.clamp_grad_input(g, mask))
    zp, scale = int(rng.integers(-10, 10)), 0.05
    y = ts.dequantize(q, zp, scale, True)
    real = lambda v: np.float32(scale) * (np.float32(v) - np.float32(zp))   # noqa: E731
    (t,) = _torch_grads(ts.clamp(y, float(real(lo)), float(real(hi))), g, y)
    np.testing.assert_array_equal(got, t)
    assert got[0] == 0 and got[-1] == (g[-1] if n > 1 else 0)


# -- loss, exp, log ---------------------------------------------------------------------------
def _ulps(a, b) -> np.ndarray:
    """Distance in units in the last place between float32 arrays (same sign: ordered ints)."""
    ia, ib = (np.asarray(v, np.float32).view(np.int32).astype(np.int64) for v in (a, b))
    ia = np.where(ia < 0, -(ia & 0x7fffffff), ia)
    ib = np.where(ib < 0, -(ib & 0x7fffffff), ib)
    return np.abs(ia - ib)


def test_exp_log_within_one_ulp():
    """te_exp_f32 / te_log_f32 (not libm: the same bits on every target) within 1 ulp of the
    correctly rounded result (NumPy's float64 rounded to float32) on seeded samples."""
    rng = _rng("explog")
    x = np.concatenate([rng.uniform(-87, 88.72, 20000), rng.uniform(-1, 1, 5000),
                        [0.0, -0.0, 1e-30, -87.0, 88.72, 88.7228]]).astype(np.float32)
    got = np.array([ctrain.exp_f32(v) for v in x], np.float32)
    u = _ulps(got, np.exp(x.astype(np.float64)).astype(np.float32))
    assert u.max() <= 1, f"exp off by {u.max()} ulp at {x[u.argmax()]}"
    bits = rng.integers(1, 0x7f800000, 20000).astype(np.uint32).view(np.float32)  # incl. subnormal
    x = np.concatenate([bits, rng.uniform(0.5, 2.0, 5000).astype(np.float32),
                        np.float32([1.0, 2.0, 0.5, 1.4142135, 1e-45, 3.4e38])])
    got = np.array([ctrain.log_f32(v) for v in x], np.float32)
    u = _ulps(got, np.log(x.astype(np.float64)).astype(np.float32))
    assert u.max() <= 1, f"log off by {u.max()} ulp at {x[u.argmax()]}"
    # edges of the contracts
    assert ctrain.exp_f32(89.0) == np.inf and ctrain.exp_f32(-87.5) == 0.0
    assert np.isnan(ctrain.exp_f32(np.nan)) and ctrain.exp_f32(0.0) == 1.0
    assert ctrain.log_f32(0.0) == -np.inf and np.isnan(ctrain.log_f32(-1.0))
    assert ctrain.log_f32(np.inf) == np.inf and ctrain.log_f32(1.0) == 0.0


@pytest.mark.parametrize("batch,classes", [(1, 2), (1, 10), (3, 7), (2, 100)])
def test_softmax_cross_entropy(batch, classes):
    """Loss and gradient on the dequantized logits == NumPy (float64) == F.cross_entropy,
    within (classes + 8) * 2^-23 (gradient, absolute: probabilities <= 1) and relative to
    1 + |loss| for the loss."""
    rng = _rng("xent", batch, classes)
    q = rng.integers(-128, 128, size=(batch, classes)).astype(np.int8)
    zp, scale = int(rng.integers(-30, 30)), float(0.05 + 0.2 * rng.random())
    labels = rng.integers(0, classes, size=batch).astype(np.int32)
    loss, grad = ctrain.softmax_cross_entropy_grad(q, zp, scale, labels)
    e_loss, e_grad = ref.softmax_cross_entropy_grad(q, zp, scale, labels)
    x = ts.dequantize(q, zp, scale, True)
    t_loss = ts.softmax_cross_entropy(x, labels)
    t_loss.backward()
    tol = (classes + 8) * 2.0**-23
    for what, l_, g_ in (("C", loss, grad), ("torch", t_loss.item(), x.grad.numpy())):
        assert abs(l_ - e_loss) <= tol * (1 + abs(e_loss)), f"{what} loss {l_} vs {e_loss}"
        assert np.abs(g_ - e_grad).max() <= tol, f"{what} gradient off"
    assert np.abs(grad.sum(axis=1)).max() < 1e-6     # softmax - one-hot sums to 0


# -- SGD / QAS updates ------------------------------------------------------------------------
def _not_tie(v) -> np.ndarray:
    """Where a float32 value is not within 1e-4 of a rounding tie (x.5): torch may add with a
    fused multiply-add, one rounding fewer than the kernel, which can only matter there."""
    return np.abs(np.abs(v - np.floor(v)) - 0.5) > 1e-4


@pytest.mark.parametrize("op,shape,momentum,qas,select", [
    ("CONV_2D", (6, 3, 3, 4), 0.0, True, False), ("CONV_2D", (5, 1, 1, 7), 0.9, True, True),
    ("DEPTHWISE_CONV_2D", (1, 3, 3, 8), 0.9, True, True),
    ("DEPTHWISE_CONV_2D", (1, 5, 5, 3), 0.0, False, False),
    ("FULLY_CONNECTED", (10, 33), 0.5, True, True)])
def test_sgd_update_s8(op, shape, momentum, qas, select):
    """Three steps: C == the float32 reference bit for bit (weights and momentum buffers);
    == torch.optim.SGD (gradient times the QAS factor s_w^-2 first) then round, away from
    rounding ties."""
    rng = _rng("sgd8", op, shape, momentum, qas, select)
    outer, n_all, inner = gr.weight_layout(op, shape)
    sel = _selection(rng, n_all) if select else None
    idx = np.arange(n_all) if sel is None else np.asarray(sel)
    w = rng.integers(-120, 121, size=shape).astype(np.int8)
    sw = (0.002 + 0.01 * rng.random(n_all)).astype(np.float32)
    gs = gr.qas_factors("weights", sw, 0.03) if qas else None
    lr = 2e-5 if qas else 0.3                     # QAS gradients are ~s_w^-2 larger
    v_c = v_r = np.zeros((outer, len(idx), inner), np.float32) if momentum else None
    w_c = w_r = w
    w_t = torch.tensor(w.reshape(outer, n_all, inner)[:, idx].astype(np.float32))
    opt = None
    for step in range(3):
        g = (rng.standard_normal((outer, len(idx), inner)) * 10).astype(np.float32)
        args = {"lr": lr, "momentum": momentum, "layout": (outer, n_all, inner), "channels": sel}
        w_c, v_c = ctrain.sgd_update_s8(w_c, g, gs, v_c, **args)
        w_r, v_r = ref.sgd_update_s8(w_r, g, gs, v_r, **args)
        np.testing.assert_array_equal(w_c, w_r)
        if momentum:
            np.testing.assert_array_equal(v_c, v_r)
        before = w_t.numpy().copy()
        scale = None if gs is None else torch.tensor(gs[idx][None, :, None])
        (w_t,), opt = ts.sgd_step_quantized([w_t], [torch.tensor(g)], lr=lr, momentum=momentum,
                                            grad_scales=[scale], bounds=[(-127, 127)], state=opt)
        # where torch's pre-rounding value is clear of a tie, the rounded weights agree
        direction = v_c if momentum else g * (1 if gs is None else gs[idx][None, :, None])
        clear = _not_tie(np.clip(before + np.float32(-lr) * direction, -127, 127))
        mine = w_c.reshape(outer, n_all, inner)[:, idx].astype(np.float32)
        np.testing.assert_array_equal(mine[clear], w_t.numpy()[clear])
        w_t = torch.tensor(mine)                   # continue from the same integers
    unselected = np.setdiff1d(np.arange(n_all), idx)
    np.testing.assert_array_equal(w_c.reshape(outer, n_all, inner)[:, unselected],
                                  w.reshape(outer, n_all, inner)[:, unselected])
    assert (w_c != w).mean() > 0.3, "the steps should change most selected weights"
    if momentum:
        buf = opt.state[opt.param_groups[0]["params"][0]]["momentum_buffer"].numpy()
        np.testing.assert_allclose(v_c, buf, rtol=1e-6, atol=0)


def test_sgd_update_s32_saturates_and_matches_torch():
    """Bias steps rounded on their own (ties to even) and added exactly, saturating at the
    int32 range; the step equals torch.optim.SGD's on a zero parameter, QAS (s_w s_x)^-2."""
    rng = _rng("sgd32")
    n = 40
    bias = rng.integers(-2**20, 2**20, size=n).astype(np.int32)
    bias[:3] = [2**31 - 5, -2**31 + 5, 2**30 + 1]           # big values (beyond float's 2^24)
    sw = (0.002 + 0.01 * rng.random(n)).astype(np.float32)
    gs = gr.qas_factors("bias", sw, 0.03)
    g = (rng.standard_normal(n) * 1e-3).astype(np.float32)
    g[0], g[1] = -1.0, 1.0                                   # push the first two past the range
    lr, momentum = 1e-3, 0.9
    vel = np.zeros(n, np.float32)
    b_c, v_c = ctrain.sgd_update_s32(bias, g, gs, vel, lr=lr, momentum=momentum)
    b_r, v_r = ref.sgd_update_s32(bias, g, gs, vel, lr=lr, momentum=momentum)
    np.testing.assert_array_equal(b_c, b_r)
    np.testing.assert_array_equal(v_c, v_r)
    assert b_c[0] == 2**31 - 1 and b_c[1] == -2**31
    assert b_c[2] != bias[2] and (b_c != bias).mean() > 0.5
    (delta,), _ = ts.sgd_step_quantized([torch.zeros(n)], [torch.tensor(g)], lr=lr,
                                        momentum=momentum, grad_scales=[torch.tensor(gs)],
                                        bounds=[(-2.0**40, 2.0**40)])
    step = np.float32(-lr) * (g * gs)
    clear = _not_tie(step)
    expect = np.clip(bias.astype(np.int64) + delta.numpy().astype(np.int64), -2**31, 2**31 - 1)
    np.testing.assert_array_equal(b_c[clear], expect[clear])


# -- gradient rules ---------------------------------------------------------------------------
def _qparams(rng):
    return int(rng.integers(-20, 20)), float(0.02 + 0.03 * rng.random())


def _rule_case(op, rng):
    """(OpSpec, targets, env of forward values, torch leaves by slot, torch output before the
    clamp).  The forward is the dequantized simulation; the int8 output comes from
    torch_sim.requantize."""
    env, leaves = {}, {}
    def act_input(slot, shape):
        q = rng.integers(-128, 128, size=shape).astype(np.int8)
        zp, s = _qparams(rng)
        env.update({f"saved:{slot}": q, f"{slot}.zero_point": zp, f"{slot}.scale": s})
        leaves[slot] = ts.dequantize(q, zp, s, True)
        return leaves[slot]
    def params(w_shape, n):
        w, sw = _weights(rng, w_shape, n)
        bias = rng.integers(-500, 500, size=n).astype(np.int32)
        env.update({"weights": w, "weights.scale": sw, "bias": bias})
        leaves["weights"], leaves["bias"] = ts.tensor(w, True), ts.tensor(bias, True)
        return leaves["weights"], sw, leaves["bias"]
    attrs = {}
    if op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        k, stride, pad_attr = (3, 2, "SAME") if op == "CONV_2D" else (5, 1, (1, 2, 2, 0))
        in_hw = (7, 6)
        pads, out_hw = zip(*(gr.window_padding(in_hw[a], k, stride, pad_attr, a) for a in range(2)))
        attrs = {"stride_h": stride, "stride_w": stride, "padding": pad_attr}
        x = act_input("input", (2, *in_hw, 3))
        if op == "CONV_2D":
            w, sw, b = params((4, k, k, 3), 4)
            y = ts.conv_2d(x, w, sw, b, env["input.scale"], stride=(stride,) * 2, pad=pads,
                           out_hw=out_hw)
        else:
            w, sw, b = params((1, k, k, 6), 6)
            y = ts.depthwise_conv_2d(x, w, sw, b, env["input.scale"], depth_multiplier=2,
                                     stride=(stride,) * 2, pad=pads, out_hw=out_hw)
        shapes = {"input": x.shape, "weights": w.shape, "output": y.shape}
        targets = {"input": None, "weights": (2, 0, 3), "bias": None}
    elif op == "FULLY_CONNECTED":
        x = act_input("input", (2, 1, 1, 9))
        w, sw, b = params((5, 9), 5)
        y = ts.fully_connected(x.reshape(2, 9), w, sw, b, env["input.scale"])
        shapes = {"input": x.shape, "weights": w.shape, "output": y.shape}
        targets = {"input": None, "weights": None, "bias": None}
    elif op == "ADD":
        y = act_input("input1", (1, 4, 5, 3)) + act_input("input2", (1, 4, 5, 3))
        shapes = {"input1": y.shape, "input2": y.shape, "output": y.shape}
        targets = {"input1": None, "input2": None}
    elif op == "AVERAGE_POOL_2D":
        x = act_input("input", (1, 7, 5, 3))
        attrs = {"stride_h": 2, "stride_w": 2, "padding": "SAME", "filter_height": 3,
                 "filter_width": 3}
        y = ts.avg_pool_2d(x, filter_hw=(3, 3), stride=(2, 2), pad=(1, 1), out_hw=(4, 3))
        shapes = {"input": x.shape, "output": y.shape}
        targets = {"input": None}
    elif op == "MEAN":
        x = act_input("input", (1, 5, 5, 4))
        attrs = {"axes": (1, 2)}
        y = ts.mean(x, (1, 2))
        shapes = {"input": x.shape, "output": y.shape}
        targets = {"input": None}
    elif op == "RESHAPE":
        x = act_input("input", (1, 2, 3, 4))
        y = x.reshape(1, 24)
        shapes = {"input": x.shape, "output": y.shape}
        targets = {"input": None}
    elif op == "PAD":
        x = act_input("input", (1, 3, 3, 2))
        attrs = {"pad_before": (0, 1, 0, 0)}
        y = ts.pad(x, (0, 1, 0, 0), (1, 5, 4, 2))
        shapes = {"input": x.shape, "output": y.shape}
        targets = {"input": None}
    elif op == "TRANSPOSE":
        x = act_input("input", (2, 3, 4, 5))
        attrs = {"perm": (0, 3, 1, 2)}
        y = x.permute(0, 3, 1, 2)
        shapes = {"input": x.shape, "output": y.shape}
        targets = {"input": None}
    else:  # RELU6
        y = act_input("input", (1, 4, 4, 3))
        shapes = {"input": y.shape, "output": y.shape}
        targets = {"input": None}
    return attrs, shapes, targets, env, leaves, y


RULE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "AVERAGE_POOL_2D", "MEAN",
            "RESHAPE", "PAD", "TRANSPOSE", "RELU6")


@pytest.mark.parametrize("op", RULE_OPS)
def test_grad_rule_matches_autograd(op):
    """A rule's steps, run with the C kernels and with the NumPy reference, give torch
    autograd's gradients of the whole op (forward, the int8 output's clamp, backward) within
    1e-5 of the largest gradient (each kernel's own bound is tested above)."""
    rng = _rng("rule", op)
    attrs, shapes, targets, env, leaves, y = _rule_case(op, rng)
    rule = gr.GRAD_RULES[op]
    if rule.clamps:
        zp, s = _qparams(rng)
        s = float(np.abs(y.detach().numpy()).max()) / 60.0     # some outputs clamp
        lo, hi = (zp, min(127, zp + 50)) if op in ("CONV_2D", "RELU6") else (-128, 127)
        attrs = {**attrs, "act_min": lo, "act_max": hi}
        out, q = ts.requantize(y, s, zp, lo, hi)
        env["output"] = q
    else:
        out = y
    spec = gr.OpSpec(op, attrs, shapes)
    g = _grad_out(rng, tuple(out.shape), 0.0)
    out.backward(torch.tensor(g))
    env["grad:output"] = g
    bw = gr.backward(spec, targets)
    got_c = ref.run_steps(bw.forward + bw.steps, dict(env), C_KERNELS)
    got_r = ref.run_steps(bw.forward + bw.steps, dict(env), ref.KERNELS)
    for slot, sel in targets.items():
        t = leaves[slot].grad.numpy().astype(np.float64)
        if sel is not None:
            t = t[..., list(sel)] if op == "DEPTHWISE_CONV_2D" else t[list(sel)]
            t = t[0] if op == "DEPTHWISE_CONV_2D" else t
        tol = 1e-5 * max(np.abs(t).max(), 1e-30)
        for what, got in (("C", got_c), ("reference", got_r)):
            a = np.asarray(got[f"grad:{slot}"], np.float64)
            assert a.shape == t.shape, f"{op} {what} grad:{slot} shape {a.shape} != {t.shape}"
            assert np.abs(a - t).max() <= tol, f"{op} {what} grad:{slot} differs from autograd"
        assert np.abs(t).max() > 0, f"{op}: gradient of {slot} is all zero (test too weak)"


def test_pruning_is_fewer_targets():
    spec = gr.OpSpec("CONV_2D", {"stride_h": 1, "stride_w": 1, "padding": "SAME", "act_min": -5,
                                 "act_max": 127},
                     {"input": (1, 5, 5, 3), "weights": (4, 3, 3, 3), "output": (1, 5, 5, 4)})
    full = gr.backward(spec, {"input": None, "weights": None, "bias": None})
    assert full.kernels == {"te_clamp_grad_mask_s8", "te_clamp_grad_input_f32",
                            "te_conv_2d_grad_input_f32", "te_conv_2d_grad_weight_f32",
                            "te_conv_2d_grad_bias_f32"}
    assert full.saves == ("input",) and [s.kernel for s in full.forward] == ["te_clamp_grad_mask_s8"]
    bias_only = gr.backward(spec, {"bias": None})
    assert bias_only.kernels == {"te_clamp_grad_mask_s8", "te_clamp_grad_input_f32",
                                 "te_conv_2d_grad_bias_f32"}
    assert bias_only.saves == ()                       # no activation kept for a bias update
    sparse = gr.backward(spec, {"weights": (3, 1)})
    (wstep,) = [s for s in sparse.steps if s.kernel == "te_conv_2d_grad_weight_f32"]
    assert wstep.args["channels"] == (3, 1) and "te_conv_2d_grad_input_f32" not in sparse.kernels
    assert gr.backward(spec, {}) == gr.Backward((), (), ())
    reshape = gr.backward(gr.OpSpec("RESHAPE", {}, {"input": (1, 6), "output": (2, 3)}),
                          {"input": None})
    assert reshape.kernels == {"te_reshape_grad_input_f32"}   # no clamp, no mask


@pytest.mark.parametrize("spec,targets,message", [
    (gr.OpSpec("SOFTMAX"), {"input": None}, "op SOFTMAX has no gradient rule"),
    (gr.OpSpec("AVERAGE_POOL_2D"), {"weights": None}, "has no gradient for 'weights'"),
    (gr.OpSpec("CONV_2D"), {"input": (1,)}, "applies to parameters only"),
    (gr.OpSpec("ADD", {"act_min": -128, "act_max": 127},
               {"input1": (1, 4, 4, 3), "input2": (1, 1, 1, 3), "output": (1, 4, 4, 3)}),
     {"input2": None}, "ADD with broadcasting"),
    (gr.OpSpec("CONV_2D", {"act_min": -128, "act_max": 127, "stride_h": 1, "stride_w": 1,
                           "padding": "SAME", "dilation_h_factor": 2},
               {"input": (1, 5, 5, 1), "weights": (1, 3, 3, 1), "output": (1, 5, 5, 1)}),
     {"input": None}, "dilation > 1"),
    (gr.OpSpec("CONV_2D", {"act_min": -128, "act_max": 127, "stride_h": 1, "stride_w": 1,
                           "padding": "VALID"},
               {"input": (1, 5, 5, 1), "weights": (1, 3, 3, 1), "output": (1, 5, 5, 1)}),
     {"input": None}, "does not match"),
])
def test_rule_errors_name_the_problem(spec, targets, message):
    with pytest.raises(gr.GradientError, match=message):
        gr.backward(spec, targets)


def test_selection_and_update_errors():
    spec = gr.OpSpec("FULLY_CONNECTED", {"act_min": -128, "act_max": 127},
                     {"input": (1, 8), "weights": (4, 8), "output": (1, 4)})
    for sel in ((), (1, 1), (4,), (-1,)):
        with pytest.raises(gr.GradientError, match=r"distinct, at least one, in \[0, 4\)"):
            gr.backward(spec, {"weights": sel})
    with pytest.raises(gr.GradientError, match="momentum in"):
        gr.update_step(spec, "weights", lr=0.1, momentum=1.0)
    with pytest.raises(gr.GradientError, match="no trainable parameter 'input'"):
        gr.update_step(spec, "input", lr=0.1)
    with pytest.raises(gr.GradientError, match="no trainable weights"):
        gr.weight_layout("ADD", (1, 2))


def test_every_rule_kernel_is_defined_three_times():
    """Each kernel a rule or update can emit (and the loss) has a C file with a contract header
    (layouts, scratch), a NumPy reference and a ctypes binding, and nothing else is defined:
    the three definitions tested above."""
    shapes = {"input": (1, 5, 5, 2), "weights": (2, 3, 3, 2), "output": (1, 5, 5, 2),
              "input1": (1, 5, 5, 2), "input2": (1, 5, 5, 2)}
    attrs = {"act_min": -128, "act_max": 127, "stride_h": 1, "stride_w": 1, "padding": "SAME",
             "filter_height": 3, "filter_width": 3, "axes": (1,), "pad_before": (0, 0, 0, 0),
             "perm": (0, 3, 1, 2)}
    emitted = set()
    for op, rule in gr.GRAD_RULES.items():
        sh = dict(shapes, weights=(1, 3, 3, 2)) if op == "DEPTHWISE_CONV_2D" else shapes
        sh = dict(sh, weights=(2, 50)) if op == "FULLY_CONNECTED" else sh
        spec = gr.OpSpec(op, attrs, sh)
        emitted |= gr.backward(spec, {s: None for s in rule.inputs + rule.params}).kernels
        for p in rule.params:
            emitted.add(gr.update_step(spec, p, lr=0.1).kernel)
    emitted.add("te_softmax_cross_entropy_grad_f32")        # the loss: the backward's start
    assert emitted == set(ref.KERNELS) == set(C_KERNELS)
    for k in sorted(emitted):
        header = (KDIR / f"{k}.h").read_text()
        assert (KDIR / f"{k}.c").is_file() and "Scratch: none." in header, k
        assert f" {k}(" in header and k in ref.KERNELS and k in C_KERNELS, k


def test_update_steps_after_backward():
    """Backward then update steps (QAS, momentum, a channel selection) run through the C
    kernels equal the reference bit for bit, and the unselected channels stay."""
    rng = _rng("update")
    spec = gr.OpSpec("DEPTHWISE_CONV_2D", {"stride_h": 1, "stride_w": 1, "padding": "SAME",
                                           "act_min": -128, "act_max": 127},
                     {"input": (1, 6, 6, 4), "weights": (1, 3, 3, 4), "output": (1, 6, 6, 4)})
    sel = (3, 1)
    bw = gr.backward(spec, {"weights": sel, "bias": None})
    ups = [gr.update_step(spec, "weights", sel, lr=5e-4, momentum=0.9),
           gr.update_step(spec, "bias", lr=1e-3, momentum=0.9)]
    x, zp, sx = _quant_input(rng, (1, 6, 6, 4))
    w, sw = _weights(rng, (1, 3, 3, 4), 4)
    env = {"output": rng.integers(-128, 128, (1, 6, 6, 4)).astype(np.int8),
           "grad:output": _grad_out(rng, (1, 6, 6, 4)), "saved:input": x, "input.zero_point": zp,
           "input.scale": sx, "weights": w, "weights.scale": sw,
           "bias": rng.integers(-500, 500, 4).astype(np.int32),
           "weights.qas": gr.qas_factors("weights", sw, sx),
           "bias.qas": gr.qas_factors("bias", sw, sx),
           "velocity:weights": np.zeros((9, 2, 1), np.float32),
           "velocity:bias": np.zeros(4, np.float32)}
    got_c = ref.run_steps(bw.forward + bw.steps + tuple(ups), dict(env), C_KERNELS)
    got_r = ref.run_steps(bw.forward + bw.steps + tuple(ups), dict(env), ref.KERNELS)
    for name in ("weights", "bias"):
        np.testing.assert_array_equal(got_c[name], got_r[name])
    assert (got_c["weights"][..., list(sel)] != w[..., list(sel)]).any()
    np.testing.assert_array_equal(got_c["weights"][..., [0, 2]], w[..., [0, 2]])
    assert (got_c["bias"] != env["bias"]).any()
    np.testing.assert_allclose(got_c["velocity:weights"], got_r["velocity:weights"], rtol=1e-6)


# -- the same bits on a Cortex-M7 -------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]
KDIR = ROOT / "firmware" / "kernels"
M7_FLAGS = ["-mcpu=cortex-m7", "-mfpu=fpv5-d16", "-mfloat-abi=hard", "-mthumb"]   # stm32f746
HARNESS_CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-Wdouble-promotion",
                  "-ffp-contract=off", "-fno-tree-loop-distribute-patterns"]
TRAIN_SOURCES = sorted([p.name for p in KDIR.glob("te_*_grad_*.c")]
                       + ["te_exp_f32.c", "te_log_f32.c", "te_sgd_update_s8.c",
                          "te_sgd_update_s32.c"])


class _Harness:
    """A C main() calling training kernels on constant data and writing every result buffer
    to out.bin; each call's expected bytes come from the same kernel through ctypes."""

    C_TYPES = {np.float32: "float", np.int8: "int8_t", np.int32: "int32_t", np.uint8: "uint8_t"}

    def __init__(self):
        self.decls, self.body, self.outputs, self.expected = [], [], [], []
        self.n = 0

    def data(self, a, dtype, mutable=False) -> str:
        a = np.ascontiguousarray(a, dtype).reshape(-1)
        name, self.n = f"d{self.n}", self.n + 1
        const = "" if mutable else "const "
        if dtype == np.float32:       # exact bits, no decimal conversion
            vals = ", ".join(f"0x{v:08x}u" for v in a.view(np.uint32))
            self.decls.append(f"static {const}union {{ uint32_t u[{a.size}]; float f[{a.size}]; }} "
                              f"{name} = {{{{{vals}}}}};")
            return f"{name}.f"
        vals = ", ".join(str(int(v)) for v in a)
        self.decls.append(f"static {const}{self.C_TYPES[dtype]} {name}[{a.size}] = {{{vals}}};")
        return name

    def out(self, expected, dtype) -> str:
        expected = np.ascontiguousarray(expected, dtype).reshape(-1)
        name, self.n = f"o{self.n}", self.n + 1
        self.decls.append(f"static {self.C_TYPES[dtype]} {name}[{expected.size}];")
        self.outputs.append((name, expected.nbytes))
        self.expected.append(expected.tobytes())
        return name

    def result(self, name, expected, dtype):
        """A buffer the calls updated in place (declared by data(mutable=True))."""
        expected = np.ascontiguousarray(expected, dtype).reshape(-1)
        self.outputs.append((name, expected.nbytes))
        self.expected.append(expected.tobytes())

    def source(self) -> str:
        incs = "\n".join(f'#include "{Path(s).with_suffix(".h").name}"' for s in TRAIN_SOURCES)
        writes = "\n".join(f"    if (te_file_write(h, {n}, {b}u) != 0) return 2;"
                           for n, b in self.outputs)
        return (f"#include <stdint.h>\n#include \"te_platform.h\"\n{incs}\n\n"
                + "\n".join(self.decls) + "\n\nint main(void)\n{\n    te_platform_init();\n"
                + "\n".join("    " + c for c in self.body)
                + '\n    const int h = te_file_open("out.bin", 1);\n    if (h < 0) return 1;\n'
                + writes + '\n    te_file_close(h);\n    te_puts("TRAIN HARNESS DONE\\n");\n'
                + "    return 0;\n}\n")


def _harness_cases(h: _Harness):
    rng = _rng("qemu")
    f32, i8, i32 = np.float32, np.int8, np.int32
    # CONV_2D 5x5 stride 2 explicit padding: input and weight gradients, a channel selection
    x, zp, sx = _quant_input(rng, (1, 9, 7, 3))
    w, sw = _weights(rng, (4, 5, 5, 3), 4)
    g = _grad_out(rng, (1, 4, 3, 4))
    win = {"stride": (2, 2), "pad": (1, 2)}
    o = h.out(ctrain.conv_2d_grad_input(g, w, sw, in_hw=(9, 7), **win), f32)
    h.body.append(f"te_conv_2d_grad_input_f32({h.data(g, f32)}, 1, 4, 3, 4, {h.data(w, i8)}, "
                  f"{h.data(sw, f32)}, 5, 5, {o}, 9, 7, 3, 2, 2, 1, 2);")
    sel = (3, 0)
    o = h.out(ctrain.conv_2d_grad_weight(g, x, zp, sx, sw, k_hw=(5, 5), channels=sel, **win), f32)
    h.body.append(f"te_conv_2d_grad_weight_f32({h.data(g, f32)}, 1, 4, 3, 4, {h.data(x, i8)}, 9, "
                  f"7, 3, {zp}, {h.data([sx], f32)}[0], {h.data(sw, f32)}, {o}, 5, 5, "
                  f"{h.data(sel, i32)}, 2, 2, 2, 1, 2);")
    o = h.out(ctrain.conv_2d_grad_bias(g, sw, sx), f32)
    h.body.append(f"te_conv_2d_grad_bias_f32({h.data(g, f32)}, 12, 4, {h.data(sw, f32)}, "
                  f"{h.data([sx], f32)}[0], {o});")
    # DEPTHWISE_CONV_2D 3x3, multiplier 2, SAME
    x, zp, sx = _quant_input(rng, (1, 6, 5, 3))
    w, sw = _weights(rng, (1, 3, 3, 6), 6)
    g = _grad_out(rng, (1, 6, 5, 6))
    dw = {"stride": (1, 1), "pad": (1, 1), "depth_multiplier": 2}
    o = h.out(ctrain.depthwise_conv_2d_grad_input(g, w, sw, in_hw=(6, 5), **dw), f32)
    h.body.append(f"te_depthwise_conv_2d_grad_input_f32({h.data(g, f32)}, 1, 6, 5, "
                  f"{h.data(w, i8)}, {h.data(sw, f32)}, 2, 3, 3, {o}, 6, 5, 3, 1, 1, 1, 1);")
    o = h.out(ctrain.depthwise_conv_2d_grad_weight(g, x, zp, sx, sw, k_hw=(3, 3), **dw), f32)
    h.body.append(f"te_depthwise_conv_2d_grad_weight_f32({h.data(g, f32)}, 1, 6, 5, "
                  f"{h.data(x, i8)}, 6, 5, 3, {zp}, {h.data([sx], f32)}[0], {h.data(sw, f32)}, 2, "
                  f"{o}, 3, 3, 0, 6, 1, 1, 1, 1);")
    # FULLY_CONNECTED
    x, zp, sx = _quant_input(rng, (2, 20))
    w, sw = _weights(rng, (7, 20), 7)
    g = _grad_out(rng, (2, 7))
    o = h.out(ctrain.fully_connected_grad_input(g, w, sw), f32)
    h.body.append(f"te_fully_connected_grad_input_f32({h.data(g, f32)}, {h.data(w, i8)}, "
                  f"{h.data(sw, f32)}, {o}, 2, 20, 7);")
    o = h.out(ctrain.fully_connected_grad_weight(g, x, zp, sx, sw), f32)
    h.body.append(f"te_fully_connected_grad_weight_f32({h.data(g, f32)}, {h.data(x, i8)}, {zp}, "
                  f"{h.data([sx], f32)}[0], {h.data(sw, f32)}, {o}, 2, 20, 7, 0, 7);")
    # AVERAGE_POOL_2D 3x3 stride 2 (counts 4, 6, 9), MEAN over H, W
    g = _grad_out(rng, (1, 3, 3, 2))
    o = h.out(ctrain.avg_pool_2d_grad_input(g, in_hw=(5, 5), filter_hw=(3, 3), stride=(2, 2),
                                            pad=(1, 1)), f32)
    h.body.append(f"te_avg_pool_2d_grad_input_f32({h.data(g, f32)}, 1, 3, 3, 2, {o}, 5, 5, 3, 3, "
                  f"2, 2, 1, 1);")
    g = _grad_out(rng, (1, 3))
    (ks, kst), (rs, rst) = ctrain.mean_index_spaces((1, 7, 5, 3), {1, 2})
    o = h.out(ctrain.mean_grad_input(g, in_shape=(1, 7, 5, 3), axes=(1, 2)), f32)
    h.body.append(f"te_mean_grad_input_f32({h.data(g, f32)}, {o}, {len(ks)}, {h.data(ks, i32)}, "
                  f"{h.data(kst, i32)}, {len(rs)}, {h.data(rs, i32)}, {h.data(rst, i32)}, 35);")
    # the clamp mask, packed then applied
    q = rng.integers(-10, 40, size=29).astype(np.int8)
    mask = ctrain.clamp_grad_mask(q, act_min=-3, act_max=30)
    o = h.out(mask, np.uint8)
    h.body.append(f"te_clamp_grad_mask_s8({h.data(q, i8)}, 29, -3, 30, {o});")
    g = _grad_out(rng, (29,), 0.0)
    o2 = h.out(ctrain.clamp_grad_input(g, mask), f32)
    h.body.append(f"te_clamp_grad_input_f32({h.data(g, f32)}, {o}, 29, {o2});")
    # softmax cross-entropy (te_exp_f32, te_log_f32 inside) and exp / log themselves
    q = rng.integers(-128, 128, size=(2, 10)).astype(np.int8)
    labels = np.array([3, 9], np.int32)
    loss, grad = ctrain.softmax_cross_entropy_grad(q, 5, 0.11, labels)
    o = h.out(grad, f32)
    ol = h.out([loss], f32)
    h.body.append(f"{ol}[0] = te_softmax_cross_entropy_grad_f32({h.data(q, i8)}, 2, 10, 5, "
                  f"0.11f, {h.data(labels, i32)}, {o});")
    xs = np.concatenate([rng.uniform(-87, 88, 48), rng.uniform(-2, 2, 16)]).astype(np.float32)
    ys = np.exp(rng.uniform(-80, 80, 64)).astype(np.float32)
    oe = h.out([ctrain.exp_f32(v) for v in xs], f32)
    og = h.out([ctrain.log_f32(v) for v in ys], f32)
    dx, dy = h.data(xs, f32), h.data(ys, f32)
    h.body.append(f"for (int i = 0; i < 64; ++i) {{ {oe}[i] = te_exp_f32({dx}[i]); "
                  f"{og}[i] = te_log_f32({dy}[i]); }}")
    # SGD: two steps with momentum and QAS on selected depthwise channels, then biases
    w, sw = _weights(rng, (1, 3, 3, 5), 5)
    qas = gr.qas_factors("weights", sw, 0.03)
    sel = (4, 1, 2)
    vel = np.zeros((9, 3, 1), np.float32)
    dwt, dvl, dsel = h.data(w, i8, mutable=True), h.data(vel, f32, mutable=True), h.data(sel, i32)
    dqas = h.data(qas, f32)
    w_c = w
    for _ in range(2):
        g = _grad_out(rng, (9, 3, 1), 0.1)
        w_c, vel = ctrain.sgd_update_s8(w_c, g, qas, vel, lr=3e-4, momentum=0.9,
                                        layout=(9, 5, 1), channels=sel)
        h.body.append(f"te_sgd_update_s8({dwt}, 9, 5, 1, {dsel}, 3, {h.data(g, f32)}, {dqas}, "
                      f"3e-4f, 0.9f, {dvl});")
    assert (w_c != w).any()
    h.result(dwt, w_c, i8)
    h.result(dvl, vel, f32)
    b = rng.integers(-2**30, 2**30, size=5).astype(np.int32)
    g = _grad_out(rng, (5,), 0.0)
    bq = gr.qas_factors("bias", sw, 0.03)
    b_c, _ = ctrain.sgd_update_s32(b, g, bq, None, lr=1e-3, momentum=0.0)
    db = h.data(b, i32, mutable=True)
    h.body.append(f"te_sgd_update_s32({db}, 5, {h.data(g, f32)}, {h.data(bq, f32)}, 1e-3f, 0.0f, 0);")
    h.result(db, b_c, i32)


def _linker_script(path: Path):
    """The project's own linker template, for QEMU's mps2-an500 with the stm32f746's sizes."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROOT / "codegen_templates"),
                             undefined=jinja2.StrictUndefined)
    text = env.get_template("linker.ld.j2").render(
        board={"name": "stm32f746", "qemu_machine": "mps2-an500"}, variant="qemu",
        stack_size=16384, flash_origin=0, flash_size=1024 * 1024, ram_origin=0x20000000,
        ram_size=320 * 1024)
    path.write_text(text)


@pytest.mark.qemu
def test_kernels_same_bits_on_cortex_m7(tmp_path):
    """One harness calling the training kernels (every backward kernel, the mask, the loss,
    exp / log, both SGD updates) on constant data, built for the host with gcc and for the
    stm32f746 (Cortex-M7, hard float, -ffp-contract=off) with arm-none-eabi-gcc and run under
    QEMU mps2-an500: both write the same bytes, equal to the ctypes results."""
    h = _Harness()
    _harness_cases(h)
    (tmp_path / "main.c").write_text(h.source())
    srcs = [str(tmp_path / "main.c")] + [str(KDIR / s) for s in TRAIN_SOURCES]
    inc = ["-I", str(KDIR), "-I", str(ROOT / "firmware" / "include")]
    plat = ROOT / "firmware" / "platform"
    host_dir, m7_dir = tmp_path / "host", tmp_path / "m7"
    host_dir.mkdir()
    m7_dir.mkdir()
    subprocess.run(["gcc", *HARNESS_CFLAGS, *inc, "-o", str(host_dir / "harness"), *srcs,
                    str(plat / "host" / "host.c")], check=True, capture_output=True, text=True)
    _linker_script(tmp_path / "linker.ld")
    subprocess.run(["arm-none-eabi-gcc", *M7_FLAGS, *HARNESS_CFLAGS, *inc, "--specs=nano.specs",
                    "-nostartfiles", "-Wl,--gc-sections", "-Wl,--no-warn-rwx-segments", "-T",
                    str(tmp_path / "linker.ld"), "-o", str(m7_dir / "harness.elf"), *srcs,
                    str(plat / "cortexm" / "startup.c"), str(plat / "cortexm" / "semihost.c")],
                   check=True, capture_output=True, text=True)
    host = subprocess.run([str(host_dir / "harness")], cwd=host_dir, capture_output=True,
                          text=True, timeout=60)
    m7 = subprocess.run(["qemu-system-arm", "-M", "mps2-an500", "-display", "none", "-monitor",
                         "none", "-semihosting-config", "enable=on,target=native,chardev=con",
                         "-chardev", "stdio,id=con,mux=on", "-serial", "chardev:con", "-kernel",
                         str(m7_dir / "harness.elf")], cwd=m7_dir, capture_output=True,
                        text=True, timeout=120)
    for run, where in ((host, "host"), (m7, "QEMU Cortex-M7")):
        assert run.returncode == 0 and "TRAIN HARNESS DONE" in run.stdout, \
            f"{where} harness failed ({run.returncode}): {run.stdout[-500:]} {run.stderr[-500:]}"
    expected = b"".join(h.expected)
    got_host, got_m7 = (host_dir / "out.bin").read_bytes(), (m7_dir / "out.bin").read_bytes()
    assert len(got_m7) == len(expected) == len(got_host)
    pos = 0
    for (name, nbytes), want in zip(h.outputs, h.expected):
        assert got_host[pos:pos + nbytes] == want, f"host harness {name} differs from ctypes"
        assert got_m7[pos:pos + nbytes] == want, f"Cortex-M7 {name} differs from the host bits"
        pos += nbytes
