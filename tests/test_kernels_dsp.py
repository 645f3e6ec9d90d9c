"""DSP (SMLAD/SXTB16) kernels for CONV_2D and FULLY_CONNECTED against TensorFlow Lite Micro.

The kernels (firmware/kernels/te_conv_2d_1x1_s8_dsp, te_conv_2d_s8_dsp,
te_fully_connected_s8_dsp on te_conv_2d_mat_mult_s8_dsp) are chosen by prepare() for boards
whose core has the DSP extension.  Each test builds one .tflite model holding many layers (one
input and one output per layer, so every layer is checked on its own), compiles it for a
Cortex-M7 (stm32f746) and a Cortex-M4 (stm32f411) board, runs several random records under
QEMU and requires exact equality with

1. TFLite Micro (the golden), and
2. the same model built for the host with the portable kernels (the kernels' twins).

Host-only tests check that the kernel choice, packed layouts and scratch formulas agree with
the kernel headers, and run the DSP kernels' plain-C fallback (te_dsp.h without
__ARM_FEATURE_DSP) against the portable kernels through ctypes.
"""
from __future__ import annotations

import ctypes
import functools
import re
import subprocess
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from tests.ckernels import CFLAGS, load_kernels, ptr
from tests.golden import run_tflm_many
from tests.tflite_builder import ModelBuilder
from tinyengine import ops, runner
from tinyengine import output_specs
from tinyengine.compiler import CompileOptions, compile_model, write_project
from tinyengine.hostio import host_io_of
from tinyengine.ops.conv import RQ_FAST, RQ_POST_OFFSET, acc_bound, pack_weights_dsp, requant_dsp
from tinyengine.ops.fully_connected import pack_weights_fc_dsp

KERNELS = Path(__file__).resolve().parents[1] / "firmware" / "kernels"
DSP_SOURCES = ("te_conv_2d_mat_mult_s8_dsp.c", "te_conv_2d_1x1_s8_dsp.c", "te_conv_2d_s8_dsp.c",
               "te_fully_connected_s8_dsp.c", "te_conv_2d_s8.c", "te_fully_connected_s8.c",
               "te_fully_connected_per_channel_s8.c", "te_conv_args.c", "te_unpack_channels.c")


def _rng(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


# -- model construction ----------------------------------------------------------------------
def _special_channels(rng, special, w, bias, ws):
    """Channels that take te_dsp.h's other requantization paths (special, per-channel only):
    'const': all-zero weights with a bias near +-2^30 (constant outputs) and scales so small
    that the offset must be added after the shift (TE_RQ_POST_OFFSET); 'big': multipliers
    above 1 (TFLite shift > 0: the generic path)."""
    if special == "const":
        w[0::3] = 0
        bias[0::3] = rng.choice([-1, 1], size=bias[0::3].size) * (1 << 30) - rng.integers(0, 99)
        ws[1::3] *= 3e-6
        bias[1::3] = rng.integers(-(1 << 29), 1 << 29, size=bias[1::3].size)
    elif special == "big":
        ws[0::2] *= 3000.0
    elif special in ("neg", "neg128"):
        # other quantizers' scales: negative (the compiler moves the sign into the channel's
        # weights and bias: the fast requantization) and tiny (multiplier flushed to 0);
        # 'neg128': some negative channels hold a -128 weight, whose negation is no int8
        # (they keep their negative multiplier: the general requantization)
        ws[0::4] *= -1.0
        ws[3::8] = 1e-10 * (1.0 + np.arange(ws[3::8].size))
        if special == "neg128":
            ws[1::4] *= -1.0
            w[1::4].reshape(w[1::4].shape[0], -1)[:, 0] = -128


def _conv_layer(mb, rng, tag, in_hw, in_c, out_c, k_hw, stride, padding, per_channel, act,
                batch=1, dil=(1, 1), special=None):
    """Add one CONV_2D with its own input and output; returns (input index, output index)."""
    x = mb.tensor(f"x{tag}", (batch, *in_hw, in_c), "int8", scale=0.02 + 0.01 * rng.random(),
                  zero_point=int(rng.integers(-20, 20)))
    w = rng.integers(-127, 128, size=(out_c, *k_hw, in_c)).astype(np.int8)
    fan_in = k_hw[0] * k_hw[1] * in_c
    ws = (0.5 + rng.random(out_c if per_channel else 1)) / (40.0 * np.sqrt(fan_in))
    bias = rng.integers(-3000, 3000, size=out_c).astype(np.int32)
    _special_channels(rng, special, w, bias, ws)
    wt = mb.const(f"w{tag}", w, "int8", scale=ws, zero_point=np.zeros(ws.size, np.int64),
                  quantized_dimension=0)
    b = mb.const(f"b{tag}", bias, "int32")
    if padding == "SAME":
        out_hw = [-(-in_hw[i] // stride[i]) for i in range(2)]
    else:
        out_hw = [(in_hw[i] - (k_hw[i] - 1) * dil[i] - 1) // stride[i] + 1 for i in range(2)]
    y = mb.tensor(f"y{tag}", (batch, *out_hw, out_c), "int8", scale=0.05 + 0.05 * rng.random(),
                  zero_point=int(rng.integers(-10, 10)) if special != "const" else -90)
    mb.op("CONV_2D", [x, wt, b], [y], padding=padding, stride_h=stride[0], stride_w=stride[1],
          dilation_h_factor=dil[0], dilation_w_factor=dil[1], fused_activation_function=act)
    return x, y


def _fc_layer(mb, rng, tag, batch, in_f, out_f, per_channel, act, special=None):
    x = mb.tensor(f"x{tag}", (batch, in_f), "int8", scale=0.03, zero_point=int(rng.integers(-20, 20)))
    out_zp = int(rng.integers(-10, 10)) if special != "const" else -100
    w = rng.integers(-127, 128, size=(out_f, in_f)).astype(np.int8)
    ws = (0.5 + rng.random(out_f if per_channel else 1)) / (40.0 * np.sqrt(in_f))
    bias = rng.integers(-3000, 3000, size=out_f).astype(np.int32)
    _special_channels(rng, special, w, bias, ws)
    wt = mb.const(f"w{tag}", w, "int8", scale=ws, zero_point=np.zeros(ws.size, np.int64),
                  quantized_dimension=0)
    b = mb.const(f"b{tag}", bias, "int32")
    y = mb.tensor(f"y{tag}", (batch, out_f), "int8", scale=0.07, zero_point=out_zp)
    mb.op("FULLY_CONNECTED", [x, wt, b], [y], fused_activation_function=act)
    return x, y


def _model(layers) -> bytes:
    """layers: list of (kind, kwargs); one input and one output per layer."""
    mb = ModelBuilder("dsp kernel test")
    ins, outs = [], []
    for i, (kind, kw) in enumerate(layers):
        rng = _rng(kind, i, sorted(kw.items()))
        x, y = (_conv_layer if kind == "conv" else _fc_layer)(mb, rng, i, **kw)
        ins.append(x)
        outs.append(y)
    mb.inputs(ins)
    mb.outputs(outs)
    return mb.build()


POINTWISE = [dict(in_hw=(5, 3 + (c % 4)), in_c=c, out_c=oc, k_hw=(1, 1), stride=(1, 1),
                  padding="VALID", per_channel=c % 3 != 0, act=("NONE", "RELU", "RELU6")[c % 3])
             for c, oc in [(1, 3), (2, 5), (3, 4), (4, 8), (5, 7), (6, 2), (7, 9), (8, 16), (9, 1),
                           (10, 6), (11, 11), (12, 13), (13, 4), (14, 10), (15, 3), (16, 32),
                           (17, 5), (19, 8), (21, 7), (23, 12), (24, 48), (25, 6), (27, 5),
                           (29, 9), (31, 2), (32, 33), (33, 17), (96, 24)]]
POINTWISE += [dict(in_hw=(7, 9), in_c=16, out_c=8, k_hw=(1, 1), stride=(2, 2), padding="SAME",
                   per_channel=True, act="RELU"),
              dict(in_hw=(8, 6), in_c=24, out_c=16, k_hw=(1, 1), stride=(2, 1), padding="VALID",
                   per_channel=False, act="NONE"),
              dict(in_hw=(3, 3), in_c=96, out_c=160, k_hw=(1, 1), stride=(1, 1), padding="VALID",
                   per_channel=True, act="RELU6"),
              dict(in_hw=(4, 5), in_c=8, out_c=12, k_hw=(1, 1), stride=(1, 1), padding="SAME",
                   per_channel=True, act="NONE", batch=3)]

GENERAL = [
    dict(in_hw=(12, 12), in_c=3, out_c=8, k_hw=(3, 3), stride=(2, 2), padding="SAME",
         per_channel=True, act="RELU6"),                                 # first layer, vww-like
    dict(in_hw=(11, 10), in_c=3, out_c=16, k_hw=(3, 3), stride=(2, 2), padding="VALID",
         per_channel=True, act="RELU"),                                  # first layer, mcunet-like
    dict(in_hw=(9, 9), in_c=8, out_c=5, k_hw=(3, 3), stride=(1, 1), padding="SAME",
         per_channel=False, act="NONE"),
    dict(in_hw=(9, 8), in_c=5, out_c=7, k_hw=(5, 5), stride=(1, 1), padding="SAME",
         per_channel=True, act="RELU"),
    dict(in_hw=(10, 11), in_c=4, out_c=6, k_hw=(5, 5), stride=(2, 2), padding="SAME",
         per_channel=True, act="NONE"),
    dict(in_hw=(11, 11), in_c=2, out_c=3, k_hw=(7, 7), stride=(2, 2), padding="SAME",
         per_channel=True, act="RELU6"),
    dict(in_hw=(15, 6), in_c=1, out_c=9, k_hw=(10, 4), stride=(2, 2), padding="SAME",
         per_channel=True, act="RELU"),                                  # kws first layer
    dict(in_hw=(8, 8), in_c=16, out_c=16, k_hw=(3, 3), stride=(1, 1), padding="VALID",
         per_channel=True, act="RELU"),                                  # resnet-like
    dict(in_hw=(7, 7), in_c=6, out_c=4, k_hw=(3, 3), stride=(1, 1), padding="SAME",
         per_channel=True, act="NONE", dil=(2, 2)),
    dict(in_hw=(6, 5), in_c=7, out_c=3, k_hw=(3, 2), stride=(1, 2), padding="SAME",
         per_channel=False, act="NONE", batch=2),
    dict(in_hw=(7, 6), in_c=3, out_c=12, k_hw=(3, 3), stride=(1, 1), padding="SAME",
         per_channel=True, act="NONE", special="const"),
    dict(in_hw=(6, 6), in_c=5, out_c=7, k_hw=(3, 3), stride=(2, 2), padding="SAME",
         per_channel=True, act="RELU", special="big"),
]
POINTWISE += [dict(in_hw=(5, 4), in_c=16, out_c=15, k_hw=(1, 1), stride=(1, 1), padding="VALID",
                   per_channel=True, act="RELU6", special="const"),
              dict(in_hw=(3, 5), in_c=8, out_c=6, k_hw=(1, 1), stride=(1, 1), padding="VALID",
                   per_channel=True, act="NONE", special="big")]

FC = [dict(batch=b, in_f=i, out_f=o, per_channel=pc, act=a)
      for b, i, o, pc, a in [(1, 1, 1, False, "NONE"), (1, 7, 3, False, "RELU"), (1, 33, 10, True, "NONE"),
                             (2, 16, 5, False, "RELU6"), (3, 250, 17, True, "NONE"),
                             (1, 640, 128, False, "RELU"), (4, 9, 2, True, "NONE"),
                             (1, 12, 7, True, "NONE"), (2, 30, 6, False, "RELU")]]
FC += [dict(batch=1, in_f=20, out_f=9, per_channel=True, act="NONE", special="const"),
       dict(batch=2, in_f=13, out_f=5, per_channel=True, act="RELU6", special="big")]


# negative and tiny weight scales (FULLY_CONNECTED per channel only: TFLite Micro refuses a
# negative per-tensor one)
NEGATIVE = [("conv", dict(in_hw=(4, 4), in_c=12, out_c=10, k_hw=(1, 1), stride=(1, 1),
                          padding="VALID", per_channel=True, act="NONE", special="neg")),
            ("conv", dict(in_hw=(5, 3), in_c=9, out_c=7, k_hw=(1, 1), stride=(1, 1),
                          padding="VALID", per_channel=True, act="RELU", special="neg128")),
            ("conv", dict(in_hw=(7, 7), in_c=4, out_c=9, k_hw=(3, 3), stride=(1, 1),
                          padding="SAME", per_channel=True, act="RELU6", special="neg")),
            ("conv", dict(in_hw=(6, 6), in_c=3, out_c=5, k_hw=(3, 3), stride=(2, 2),
                          padding="SAME", per_channel=False, act="NONE", special="neg")),
            ("conv", dict(in_hw=(6, 5), in_c=3, out_c=10, k_hw=(3, 3), stride=(1, 1),
                          padding="SAME", per_channel=True, act="NONE", special="neg128")),
            ("fc", dict(batch=2, in_f=96, out_f=20, per_channel=True, act="NONE", special="neg")),
            ("fc", dict(batch=1, in_f=67, out_f=12, per_channel=True, act="RELU",
                        special="neg128"))]


# -- host-only checks ------------------------------------------------------------------------
def _compiled(model: bytes, board: str, tmp_path, name: str):
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(model)
    return path, compile_model(path, CompileOptions(board=board))


def test_dsp_kernel_choice_and_scratch(tmp_path):
    layers = [("conv", POINTWISE[0]), ("conv", POINTWISE[-1]), ("conv", GENERAL[0]), ("fc", FC[5])]
    model = _model(layers)
    _, host = _compiled(model, "host", tmp_path, "m")
    _, m7 = _compiled(model, "stm32f746", tmp_path, "m")
    def kernels(c):
        return sorted(n.params["kernel"] for n in c.graph.nodes)

    assert kernels(host) == ["te_conv_2d_s8"] * 3 + ["te_fully_connected_s8"]
    assert kernels(m7) == ["te_conv_2d_1x1_s8_dsp"] * 2 + ["te_conv_2d_s8_dsp",
                                                           "te_fully_connected_s8_dsp"]
    # scratch: the planner reserves exactly the headers' formulas; the FC kernel needs none
    macro = {"te_conv_2d_1x1_s8_dsp": lambda p: 16 * ((p["in_c"] + 3) // 4),
             "te_conv_2d_s8_dsp": lambda p: 24 * ((p["k_h"] * p["k_w"] * p["in_c"] + 3) // 4)}
    for n in m7.graph.nodes:
        k = n.params["kernel"]
        text = (KERNELS / f"{k}.h").read_text()
        if k == "te_fully_connected_s8_dsp":
            assert "Scratch: none" in text and ops.get(n.op).scratch_bytes(n, m7.graph) == 0
            # only the expanded table of bit-packed per-channel parameters, if any
            table = n.params.get("rq_table_bytes", 0)
            assert m7.plan.scratch.get(n.name, (0, 0))[1] == table
            assert ops.get(n.op).kernel_sources(n) == (f"{k}.c",)
            continue
        assert re.search(r"#define TE_\w+_SCRATCH\(", text), k
        assert ops.get(n.op).scratch_bytes(n, m7.graph) == macro[k](n.params) > 0
        assert m7.plan.scratch[n.name][1] >= macro[k](n.params) + n.params.get("rq_table_bytes", 0)
        assert set(ops.get(n.op).kernel_sources(n)) == {f"{k}.c", "te_conv_2d_mat_mult_s8_dsp.c",
                                                        "te_conv_args.c", "te_unpack_channels.c"}
        # compact requantization: 4 + 1 bytes per output channel
        assert n.params["rq_mult"].dtype == np.int32 and n.params["rq_shift"].dtype == np.int8
        assert n.params["rq_mult"].size == n.params["rq_shift"].size == n.params["out_c"]
    for n in host.graph.nodes:
        assert ops.get(n.op).scratch_bytes(n, host.graph) == 0


def test_negative_scales_keep_the_fast_requantization_where_foldable(tmp_path):
    """A negative multiplier whose sign moves into its channel's weights and bias leaves the
    layer on te_dsp.h's fast requantization; one with a -128 weight (no int8 negation) puts
    the layer on the general one, with the negative multiplier as TFLite computed it."""
    _, m7 = _compiled(_model(NEGATIVE), "stm32f746", tmp_path, "neg")
    assert len(m7.graph.nodes) == len(NEGATIVE)
    for node in m7.graph.nodes:
        kw = NEGATIVE[int(m7.graph.tensor(node.outputs[0]).name[1:])][1]
        p = node.params
        assert p["kernel"].endswith("_dsp"), p["kernel"]
        fast = bool(p["rq_mode"] & RQ_FAST)
        assert fast == (kw["special"] == "neg"), (kw, p["rq_mode"])
        assert (np.asarray(p["rq_mult"]) < 0).any() == (not fast)


def test_small_fully_connected_head_keeps_the_portable_kernel(tmp_path):
    """A model whose FULLY_CONNECTED layers have few MACs in all (a conv net's classifier head)
    runs them with the portable kernel: its DSP twin would cost more Flash than it saves."""
    from tinyengine.ops.fully_connected import FullyConnected

    small = [("conv", POINTWISE[0]), ("fc", FC[2]), ("fc", FC[1])]
    _, m7 = _compiled(_model(small), "stm32f746", tmp_path, "small")
    fc = [n for n in m7.graph.nodes if n.op == "FULLY_CONNECTED"]
    assert sum(ops.get(n.op).macs(n, m7.graph) for n in fc) < FullyConnected.DSP_MIN_MODEL_MACS
    assert sorted(n.params["kernel"] for n in fc) == ["te_fully_connected_per_channel_s8",
                                                     "te_fully_connected_s8"]
    assert [n.params["kernel"] for n in m7.graph.nodes if n.op == "CONV_2D"] == [
        "te_conv_2d_1x1_s8_dsp"]
    _, big = _compiled(_model(small + [("fc", FC[5])]), "stm32f746", tmp_path, "big")
    assert all(n.params["kernel"] == "te_fully_connected_s8_dsp"
               for n in big.graph.nodes if n.op == "FULLY_CONNECTED")


def test_calls_use_a_const_args_struct_unless_a_value_needs_more_than_int16(tmp_path):
    """DSP convolutions are called through te_conv_args (te_conv_args.h): a const struct and
    four pointer arguments; a layer with a dimension beyond int16_t keeps the plain call."""
    from tinyengine.codegen import generate

    def model_c(in_w):
        layer = dict(in_hw=(1, in_w), in_c=4, out_c=4, k_hw=(1, 1), stride=(1, 1),
                     padding="VALID", per_channel=True, act="NONE")
        _, c = _compiled(_model([("conv", layer)]), "stm32h743", tmp_path, f"w{in_w}")
        return generate(c.graph, c.plan, {"version": "t", "model": "m", "model_sha256": "0" * 64,
                                          "board": "b", "options": ""}).files["model.c"]

    small, wide = model_c(9), model_c(40000)
    assert "te_conv_2d_1x1_s8_dsp_call(&a," in small and "static const te_conv_args a" in small
    assert "te_conv_2d_1x1_s8_dsp(" in wide and "te_conv_args a" not in wide


def test_pack_weights_dsp_layout():
    w = np.arange(5 * 6).reshape(5, 6).astype(np.int8)     # 5 rows, K = 6 -> k4 = 2
    p = pack_weights_dsp(w)
    assert p.size == 5 * 8
    # rows 0/1 interleaved by groups of 4, zero padded to 8, then rows 2/3, then row 4 alone
    assert list(p[:16]) == [0, 1, 2, 3, 6, 7, 8, 9, 4, 5, 0, 0, 10, 11, 0, 0]
    assert list(p[32:]) == [24, 25, 26, 27, 28, 29, 0, 0]


def test_pack_weights_fc_dsp_layout():
    w = np.arange(6 * 5).reshape(6, 5).astype(np.int8)     # 6 rows, K = 5 -> k4 = 2
    p = pack_weights_fc_dsp(w)
    assert p.size == 6 * 8
    # rows 0..3 interleaved by groups of 4 (zero padded to 8), then rows 4 and 5 whole
    assert list(p[:16]) == [0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 13, 15, 16, 17, 18]
    assert list(p[16:32]) == [4, 0, 0, 0, 9, 0, 0, 0, 14, 0, 0, 0, 19, 0, 0, 0]
    assert list(p[32:]) == [20, 21, 22, 23, 24, 0, 0, 0, 25, 26, 27, 28, 29, 0, 0, 0]


@functools.lru_cache(maxsize=None)
def _dsp_lib() -> ctypes.CDLL:
    """The DSP kernels built natively (te_dsp.h's plain-C path), with the project's flags."""
    out = Path(tempfile.mkdtemp(prefix="te_dsp_")) / "libtedsp.so"
    sources = [str(KERNELS / f) for f in DSP_SOURCES]
    subprocess.run(["gcc", *CFLAGS, "-I", str(KERNELS), "-o", str(out), *sources],
                   check=True, capture_output=True, text=True)
    return ctypes.CDLL(str(out))


def _requant_c(x, mult, shift, off, act=(-128, 127)):
    """The compact requantization (requant_dsp + te_dsp.h) of accumulators x, one channel each,
    through te_fully_connected_s8_dsp with in_features = 1 and zero weights (acc = acc_init)."""
    n = len(x)
    acc = np.asarray(x, np.int32)
    m, e, mode = requant_dsp(mult, shift, np.abs(acc.astype(np.int64)), off, *act)
    wts = np.zeros(4 * n, np.int8)
    inp = np.zeros(4, np.int8)
    out = np.zeros(n, np.int8)
    i32 = ctypes.c_int32
    _dsp_lib().te_fully_connected_s8_dsp(
        ptr(inp), ptr(wts), ptr(acc), ptr(out), i32(1), i32(1), i32(n), ptr(m), ptr(e), i32(1),
        i32(mode), i32(off), i32(act[0]), i32(act[1]))
    return out, mode


def test_requant_dsp_matches_tflite():
    from tinyengine.quant import multiply_by_quantized_multiplier
    rng = _rng("requant")
    fixed = [(-1, 1 << 30, -1), (1, 1 << 30, -1), (-3, 1 << 30, -2), (5, 0, 0), (-5, 0, 0),
             (-7, 0, 0), ((1 << 30) - 1, (1 << 31) - 1, -1), (-(1 << 30) + 1, 1 << 30, -1),
             (-(1 << 30) + 1, (1 << 31) - 1, -31), (12345, 1 << 30, -31)]
    seen = set()
    for off in (-128, -5, 0, 17, 127):
        for kind in ("fast", "post", "generic"):
            cases = list(fixed)
            for _ in range(400):
                e = int(rng.integers(1, 13)) if kind == "fast" else int(rng.integers(18, 32))
                x = int(rng.integers(-(1 << min(e + 9, 29)), 1 << min(e + 9, 29)))
                cases.append((x, int(rng.integers(1 << 30, 1 << 31)), -e))
            if kind == "generic":
                cases += [(int(rng.integers(-5000, 5000)), int(rng.integers(1 << 30, 1 << 31)),
                           int(rng.integers(0, 4))) for _ in range(100)]
            x, m, s = (np.array(v, np.int64) for v in zip(*cases))
            want = np.clip(multiply_by_quantized_multiplier(x, m, s) + off, -128, 127)
            got, mode = _requant_c(x, m, s, off)
            assert np.array_equal(got, want), (off, kind, np.flatnonzero(got != want)[:5])
            seen.add(mode & (RQ_FAST | RQ_POST_OFFSET))
            got, _ = _requant_c(x, m, s, off, act=(-60, 90))
            assert np.array_equal(got, np.clip(want, -60, 90))
    assert seen == {0, RQ_FAST, RQ_FAST | RQ_POST_OFFSET}


def test_requant_dsp_negative_multipliers_match_tflite():
    """te_dsp.h's general requantization with TFLite's negative multipliers (a negative
    weight scale the compiler cannot fold), -2^31 included, left shifts, and the multipliers
    of |scale| < 2^-31 (0, shift 0); SRDHM's one saturating case (x = m = -2^31), which it
    leaves out, sends the layer to the portable kernel (srdhm_may_saturate)."""
    from tinyengine.ops.conv import srdhm_may_saturate
    from tinyengine.quant import multiply_by_quantized_multiplier, wrap_int32
    lo = -(1 << 31)
    assert srdhm_may_saturate([5, lo], [0, -1], [1 << 31, 1 << 31])
    assert srdhm_may_saturate([lo], [2], [1 << 29]) and not srdhm_may_saturate([lo], [1], 5)
    assert not srdhm_may_saturate([lo, lo + 1], [0, 0], [(1 << 31) - 1, 1 << 31])
    rng = _rng("requant-negative")
    cases = [(lo + 1, lo, 0), (lo, lo + 1, 0), ((1 << 30) - 1, lo, 1),
             (-1, -(1 << 30), -1), (1, -(1 << 30), -1), (3, -(1 << 30), -2), (-3, -(1 << 30), -2),
             (5, lo, -1), (-5, lo, -1), (7, 0, 0), ((1 << 31) - 1, lo, -31), (12345, -1, -31)]
    for _ in range(600):
        s = int(rng.integers(-31, 4))
        x = int(rng.integers(-(1 << 31), 1 << 31)) >> int(rng.integers(0, 31))
        cases.append((x, -int(rng.integers(1 << 30, (1 << 31) + 1)), s))
    x, m, s = (np.array(v, np.int64) for v in zip(*cases))
    keep = ~((m == lo) & (wrap_int32(x << np.maximum(s, 0)) == lo))
    x, m, s = x[keep], m[keep], s[keep]
    r = multiply_by_quantized_multiplier(x, m, s)
    for off in (-128, 0, 37):
        got, mode = _requant_c(x, m, s, off)
        assert not mode & RQ_FAST
        # r + off in int32 (TFLite adds the offset in int32: beyond it, undefined behaviour)
        ok = (r + off >= -(1 << 31)) & (r + off < (1 << 31))
        bad = np.flatnonzero(ok & (got != np.clip(r + off, -128, 127)))
        assert bad.size == 0, (off, [(int(x[i]), int(m[i]), int(s[i])) for i in bad[:5]])
        assert ok.mean() > 0.95


def test_negative_multiplier_fold_is_exact():
    """fold_negative_multipliers' identity: MultiplyByQuantizedMultiplier(x, m, s) ==
    MultiplyByQuantizedMultiplier(-x, -m, s) for every int32 x, m other than -2^31 (SRDHM sees
    the product only), random and at the rounding ties; and the fold's conditions."""
    from tinyengine.ops.conv import fold_negative_multipliers
    from tinyengine.quant import multiply_by_quantized_multiplier as mbqm
    rng = _rng("fold-negative")
    x = np.concatenate([rng.integers(-(1 << 31) + 1, 1 << 31, 20000) >> rng.integers(0, 31, 20000),
                        np.arange(-4096, 4097)])
    m = -rng.integers(1 << 30, 1 << 31, x.size)
    m[::7] = -(1 << 30)                                  # exact halves: the rounding ties
    s = rng.integers(-31, 1, x.size)
    assert np.array_equal(mbqm(x, m, s), mbqm(-x, -m, s))
    # channels: folded / weight -128 / m = -2^31 / positive / accumulator bound too large
    w = np.array([[3, -127], [-128, 5], [1, 2], [4, 4], [1, 1]], np.int8)
    acc = np.array([10, -20, 30, 40, 50])
    mult = np.array([-(1 << 30) - 5, -(1 << 30), -(1 << 31), (1 << 30) + 1, -(1 << 30)])
    shift = np.array([-3, -3, -3, -3, 2])
    bound = np.array([100, 100, 100, 100, 1 << 29])
    a2, w2, m2 = fold_negative_multipliers(acc, w, mult, shift, bound)
    assert list(a2) == [-10, -20, 30, 40, 50]
    assert list(m2) == [(1 << 30) + 5] + list(mult[1:])
    assert w2.tolist() == [[-3, 127]] + w.tolist()[1:] and w2.dtype == np.int8


def test_acc_bound():
    w = np.array([[1, -2, 3], [0, 0, 0]], np.int8)
    assert list(acc_bound([-10, 7], w)) == [10 + 128 * 6, 7]


# -- QEMU --------------------------------------------------------------------------------------
def _run_board(path, board: str, tmp_path, records):
    c = compile_model(path, CompileOptions(board=board))
    out = tmp_path / f"proj_{board}"
    write_project(c, out)
    hio = host_io_of(c.graph)
    result = runner.run(out, [hio.to_device(r) for r in records], output_specs(c.graph))
    return c, [hio.from_device(o) for o in result.outputs]


def _random_records(model_path, n, seed):
    c = compile_model(model_path, CompileOptions(board="host"))
    rng = np.random.default_rng(seed)
    return [[rng.integers(-128, 128, size=c.graph.tensors[t].shape).astype(np.int8)
             for t in c.graph.inputs] for _ in range(n)]


def _check_layers(layers, tmp_path, name, boards=("stm32f746", "stm32f411"), n=3):
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(_model(layers))
    records = _random_records(path, n, zlib.crc32(name.encode()))
    golden = run_tflm_many(path, records)
    _, host = _run_board(path, "host", tmp_path, records)
    for board in boards:
        c, got = _run_board(path, board, tmp_path, records)
        dsp = [n.params.get("kernel", "") for n in c.graph.nodes]
        assert all(k.endswith("_dsp") for k in dsp), dsp
        for r, (g_rec, y_rec, h_rec) in enumerate(zip(golden, got, host)):
            for i, (g, y, h) in enumerate(zip(g_rec, y_rec, h_rec)):
                g = np.asarray(g).reshape(y.shape)
                assert np.array_equal(h, g), f"host portable kernel, layer {i} {layers[i]}"
                assert np.array_equal(y, g), \
                    f"{board} record {r} layer {i} {layers[i]}: {np.count_nonzero(y != g)} of " \
                    f"{y.size} values differ from TFLM (max {np.abs(y.astype(int) - g).max()})"
                assert np.array_equal(y, h)
    for g_rec in golden:
        for g in g_rec:
            if np.asarray(g).size >= 16:
                assert len(np.unique(g)) > 1, "degenerate test: constant output"


@pytest.mark.qemu
def test_conv_1x1_dsp_on_qemu(tmp_path):
    _check_layers([("conv", kw) for kw in POINTWISE], tmp_path, "pointwise")


@pytest.mark.qemu
def test_conv_general_dsp_on_qemu(tmp_path):
    _check_layers([("conv", kw) for kw in GENERAL], tmp_path, "general")


@pytest.mark.qemu
def test_negative_and_tiny_scales_dsp_on_qemu(tmp_path):
    _check_layers(NEGATIVE, tmp_path, "negative")


@pytest.mark.qemu
def test_fully_connected_dsp_on_qemu(tmp_path):
    _check_layers([("fc", kw) for kw in FC], tmp_path, "fc")
