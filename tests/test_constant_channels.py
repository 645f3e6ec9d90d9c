"""Constant channels: output channels whose int8 output is the same for every input.

MCUNet-style models have many: all-zero weights (pruned channels, weight scale 2^-23), weight
scales so small that the requantized accumulator never leaves one step, biases that saturate
the activation clamp.  The compiler gives them zero weights and another channel's (m, s) with a
small accumulator start (ops/conv.py fold_constant_channels), so they do not widen the layer's
bit-packed tables (ops/chanpack.py).  That is only correct if the detection is exact, so it is
checked here against an exhaustive search, and end to end against TFLM on inputs that drive a
nearly constant channel to both ends of its accumulator range.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.golden import run_tflm_many
from tests.tflite_builder import ModelBuilder
from tinyengine import ops, runner
from tinyengine import output_specs
from tinyengine.compiler import CompileOptions, compile_model, write_project
from tinyengine.hostio import host_io_of
from tinyengine.ops import chanpack
from tinyengine.ops.conv import constant_channels, fold_constant_channels
from tinyengine.quant import multiply_by_quantized_multiplier, quantize_multiplier_array


# -- the detection, against every input ---------------------------------------------------------
def _exhaustive(acc_init, w, mult, shift, x_range, clamp):
    """Per channel, the set of outputs over every input of a 2-tap channel (256^2 inputs)."""
    xs = np.arange(x_range[0], x_range[1] + 1, dtype=np.int64)
    a, b = np.meshgrid(xs, xs, indexing="ij")
    out = []
    for c in range(len(acc_init)):
        acc = acc_init[c] + w[c, 0] * a + w[c, 1] * b
        k = multiply_by_quantized_multiplier(acc.ravel(), mult[c], shift[c])
        if clamp is not None:
            k = np.clip(k + clamp[0], clamp[1], clamp[2]) - clamp[0]
        out.append(set(np.unique(k).tolist()))
    return out


@pytest.mark.parametrize("x_range, clamp", [((-128, 127), None), ((-128, 127), (-5, -128, 127)),
                                            ((-128, 127), (-128, -128, 60)),
                                            ((-3, 252), (17, -20, 127))])
def test_constant_channels_is_exact(x_range, clamp):
    """constant_channels says 'constant' exactly where every input gives one output, and that
    output's value; channels one step from constant are among the cases."""
    rng = np.random.default_rng(abs(hash((x_range, clamp))) % 2**32)
    n = 400
    w = rng.integers(-127, 128, size=(n, 2))
    w[rng.random(n) < 0.15] = 0                                    # all-zero weights
    w[rng.random((n, 2)) < 0.2] = 0
    scale = np.exp(rng.uniform(np.log(1e-7), np.log(1e-1), n))     # many tiny multipliers
    mult, shift = quantize_multiplier_array(scale)
    mult, shift = np.asarray(mult, np.int64), np.asarray(shift, np.int64)
    acc_init = np.round(rng.normal(0, 1, n) * np.exp(rng.uniform(0, np.log(2e8), n))).astype(np.int64)
    mask, k = constant_channels(acc_init, w, mult, shift, x_range, clamp)
    truth = _exhaustive(acc_init, w, mult, shift, x_range, clamp)
    for c in range(n):
        assert mask[c] == (len(truth[c]) == 1), (c, w[c], acc_init[c], mult[c], shift[c], truth[c])
        if mask[c]:
            got = int(k[c]) if clamp is None else \
                int(np.clip(k[c] + clamp[0], clamp[1], clamp[2]) - clamp[0])
            assert {got} == truth[c]
    live_nonzero = mask & np.any(w != 0, axis=1)
    near = [c for c in range(n) if len(truth[c]) == 2]
    assert live_nonzero.sum() >= 20 and (~mask).sum() >= 50 and len(near) >= 5, \
        (live_nonzero.sum(), (~mask).sum(), len(near))


def test_fold_gives_constant_channels_zero_weights_and_live_parameters():
    """A folded channel: zero weights, and a live channel's (m, s) (a zero multiplier only where
    no channel can lend one), with the same output for its (now constant) accumulator."""
    rng = np.random.default_rng(3)
    n, taps = 64, 9
    w = rng.integers(-127, 128, size=(n, taps))
    w[:6] = 0
    scale = rng.uniform(0.002, 0.01, n)
    scale[6:16] *= 1e-6                                            # constant by range
    mult, shift = (np.asarray(v, np.int64) for v in quantize_multiplier_array(scale))
    acc = rng.integers(-20000, 20000, n)
    acc[16:20] = 1 << 28                                           # saturate the clamp high
    clamp = (-10, -128, 127)
    mask, k = constant_channels(acc, w, mult, shift, (-128, 127), clamp)
    assert mask[:20].all() and mask[20:].sum() <= 2
    a2, m2, s2, w2 = fold_constant_channels(acc, w, mult, shift, clamp=clamp)
    live = ~mask
    for c in np.flatnonzero(mask):
        assert not w2[c].any()
        assert any(m2[c] == mult[j] and s2[c] == shift[j] for j in np.flatnonzero(live))
        y = np.clip(multiply_by_quantized_multiplier(a2[c], m2[c], s2[c]) + clamp[0], *clamp[1:])
        assert y == np.clip(k[c] + clamp[0], *clamp[1:])
    assert np.array_equal(w2[live], w[live]) and np.array_equal(a2[live], acc[live])
    # the folded ranges are the live channels' ranges
    assert m2[mask].min() >= mult[live].min() and s2[mask].min() >= shift[live].min()


# -- end to end ----------------------------------------------------------------------------
C = 24
NEAR = 2           # a channel one step from constant (must not be folded)
SPECIAL_CONSTANT = [3, 4, 5, 6, 7, 8]   # see _channels
FC_OUT = 200      # > 4,096 MACs: the DSP fully connected kernel


def _channels(rng, n, fan_in, in_s, out_s, special):
    """Weights, weight scales and biases with special channels at the front:
    0-1 live, NEAR: one step from constant, 3-5: constant by their range (tiny scale,
    nonzero weights), 6-7: saturating bias, 8: all-zero weights and zero bias."""
    w = rng.integers(-127, 128, size=(n, fan_in))
    ws = rng.uniform(0.5, 1.5, n) * out_s * 40 / (in_s * 127 * np.sqrt(fan_in) * 8)
    b = rng.integers(-3000, 3000, n)
    if special:
        # NEAR: |acc| reaches ~0.8 steps of the output at the ends of its range
        ws[NEAR] = 0.8 * out_s / (in_s * 128 * np.abs(w[NEAR]).sum())
        b[NEAR] = 0
        ws[3:6] = 0.2 * out_s / (in_s * 128 * np.abs(w[3:6]).sum(axis=1))
        b[3:6] = [0, 1, -1]
        b[6:8] = [1 << 29, -(1 << 29)]
        ws[6:8] = out_s / in_s * 1e-3
        w[8], b[8] = 0, 0
    return w, ws.astype(np.float32), b.astype(np.int32)


def _model() -> tuple:
    """1x1 conv -> 3x3 depthwise -> 3x3 stride-2 conv -> average pool -> per-channel FC, each
    with the special channels, every layer's output a model output; returns (tflite bytes,
    the first layer's weights [C, 16])."""
    rng = np.random.default_rng(11)
    mb = ModelBuilder("constant channels")
    s, zp, hw = 0.05, -3, 6
    x = first = mb.tensor("x", (1, hw, hw, 16), "int8", scale=s, zero_point=zp)
    outs, w_first = [], None
    for n, (kind, k, stride) in enumerate([("conv", 1, 1), ("dw", 3, 1), ("conv", 3, 2)]):
        cin = 16 if n == 0 else C
        fan = k * k * (1 if kind == "dw" else cin)
        out_s = 0.04 + 0.01 * n
        w, ws, b = _channels(rng, C, fan, s, out_s, True)
        if n == 0:
            w_first = w
        wt = w.T.reshape(1, k, k, C) if kind == "dw" else w.reshape(C, k, k, cin)
        wi = mb.const(f"w{n}", wt.astype(np.int8), "int8", scale=ws,
                      zero_point=np.zeros(C, np.int64), quantized_dimension=3 if kind == "dw" else 0)
        bi = mb.const(f"b{n}", b, "int32", scale=(s * ws).astype(np.float32),
                      zero_point=np.zeros(C, np.int64))
        hw = -(-hw // stride)
        out_zp = int(rng.integers(-20, 20))
        y = mb.tensor(f"y{n}", (1, hw, hw, C), "int8", scale=out_s, zero_point=out_zp)
        opts = dict(padding="SAME", stride_h=stride, stride_w=stride,
                    fused_activation_function="RELU" if n == 1 else "NONE")
        if kind == "dw":
            mb.op("DEPTHWISE_CONV_2D", [x, wi, bi], [y], depth_multiplier=1, **opts)
        else:
            mb.op("CONV_2D", [x, wi, bi], [y], **opts)
        outs.append(y)
        x, s = y, out_s
    pooled = mb.tensor("pooled", (1, 1, 1, C), "int8", scale=s, zero_point=out_zp)
    mb.op("AVERAGE_POOL_2D", [x], [pooled], padding="VALID", stride_h=1, stride_w=1,
          filter_height=hw, filter_width=hw, fused_activation_function="NONE")
    flat = mb.tensor("flat", (1, C), "int8", scale=s, zero_point=out_zp)
    mb.op("RESHAPE", [pooled, mb.const("shape", np.array([1, C]), "int32")], [flat])
    w, ws, b = _channels(rng, FC_OUT, C, s, 0.1, True)
    wi = mb.const("wfc", w.astype(np.int8), "int8", scale=ws, zero_point=np.zeros(FC_OUT, np.int64),
                  quantized_dimension=0)
    bi = mb.const("bfc", b, "int32", scale=(s * ws).astype(np.float32),
                  zero_point=np.zeros(FC_OUT, np.int64))
    y = mb.tensor("out", (1, FC_OUT), "int8", scale=0.1, zero_point=5)
    mb.op("FULLY_CONNECTED", [flat, wi, bi], [y], fused_activation_function="NONE")
    mb.inputs([first])
    mb.outputs(outs + [y])
    return mb.build(), w_first


def _records(w_first):
    """Random inputs, and inputs that drive the first layer's NEAR channel to the ends of its
    accumulator range (x = 127 where its weight is positive, -128 where negative, and the
    reverse), where its output differs by one step."""
    rng = np.random.default_rng(5)
    sign = np.sign(w_first[NEAR])
    hi = np.where(sign > 0, 127, -128).astype(np.int8)
    lo = np.where(sign > 0, -128, 127).astype(np.int8)
    recs = [rng.integers(-128, 128, (1, 6, 6, 16)).astype(np.int8) for _ in range(2)]
    recs += [np.broadcast_to(v, (1, 6, 6, 16)).copy() for v in (hi, lo)]
    recs += [np.full((1, 6, 6, 16), v, np.int8) for v in (-128, 127)]
    return [[r] for r in recs]


@pytest.mark.parametrize("board", ["host", pytest.param("stm32f746", marks=pytest.mark.qemu),
                                   pytest.param("stm32f411", marks=pytest.mark.qemu)])
def test_constant_channels_fold_is_bit_exact(board, tmp_path):
    """Conv 1x1, conv 3x3, depthwise and FC layers with constant channels of every kind: the
    DSP layers fold them (zero weights, narrow tables) and every layer's output equals TFLM's,
    on inputs that take a nearly constant channel to both of its outputs."""
    data, w_first = _model()
    path = tmp_path / "cc.tflite"
    path.write_bytes(data)
    records = _records(w_first)
    golden = run_tflm_many(path, records)
    near = [np.asarray(g[0])[..., NEAR] for g in golden[2:4]]
    assert near[0].max() != near[1].min(), "the NEAR channel does not move: degenerate test"
    c = compile_model(path, CompileOptions(board=board))
    if board != "host":
        kinds = [n.params.get("kernel", "") for n in c.graph.nodes
                 if n.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
        assert all(k.endswith("_dsp") for k in kinds), kinds
        for node in c.graph.nodes:
            cp = ops.get(node.op).channel_params(node)
            if cp is None:
                continue
            live = np.setdiff1d(np.arange(cp.n), SPECIAL_CONSTANT)
            alone = chanpack.ChannelParams(cp.acc[live], cp.mult[live], cp.byte[live], cp.n,
                                           scales=cp.scales)
            (wa, wm, wb), (la, lm, lb) = chanpack.widths(cp), chanpack.widths(alone)
            # the constant channels widen the multiplier and shift fields not at all, the
            # accumulator starts by <= 2 bits (a saturated output's preimage, ~256 output steps,
            # is above this test's small live accumulators); without the fold: ~30-bit
            # accumulators from the 2^29 biases, 24-31-bit multipliers, wider shift fields
            assert wa <= la + 2 and wm <= lm and wb <= lb, (node.name, (wa, wm, wb), (la, lm, lb))
    out = tmp_path / board
    write_project(c, out)
    hio = host_io_of(c.graph)
    result = runner.run(out, [hio.to_device(r) for r in records], output_specs(c.graph))
    for r, (got, gold) in enumerate(zip(result.outputs, golden)):
        for i, (y, g) in enumerate(zip(hio.from_device(got), gold)):
            g = np.asarray(g).reshape(y.shape)
            assert np.array_equal(y, g), (board, r, i, np.count_nonzero(y != g))
