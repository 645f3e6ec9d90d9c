"""te_add_s8_dsp, the DSP twin of te_add_s8 (same-shape int8 ADD), against te_add_s8 and TFLM.

1. Host (te_dsp.h's plain-C path, through ctypes): the kernel's stages over all their inputs
   for many multipliers and shifts, against TFLite's MultiplyByQuantizedMultiplierSmallerThanOneExp
   (tinyengine.quant); the whole kernel against te_add_s8 over all 65536 (in1, in2) pairs for
   many layers, on random sizes, with out aliasing in1 or in2, and on the argument sets that
   take its other paths (offset not folded, out_offset after the shift, no exact input).
2. QEMU (marked `qemu`): a model of many ADD layers compiled for stm32f746 (Cortex-M7) and
   stm32f411 (Cortex-M4), where the kernel runs its assembly loops, on records that give every
   layer all 65536 input pairs: equal to TFLite Micro.
"""
from __future__ import annotations

import ctypes
import functools
import subprocess
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from tests.ckernels import CFLAGS, KERNELS, ptr
from tests.golden import run_tflm_many
from tests.tflite_builder import ModelBuilder
from tinyengine import quant, runner
from tinyengine import output_specs
from tinyengine.compiler import CompileOptions, compile_model, write_project
from tinyengine.hostio import host_io_of
from tinyengine.ops.elementwise import add_params

I32 = ctypes.c_int32
ALL_PAIRS = np.stack(np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij"),
                     axis=-1).reshape(-1, 2).astype(np.int8)        # every (in1, in2) pair

SHIM = r"""
#include "te_add_s8_dsp.h"
/* te_add_dsp_stage_b over all 256 int8 inputs */
void t_stage_b(int32_t b_off21, int32_t mb, int32_t rb, int32_t eb, int32_t *out)
{
    for (int32_t b = -128; b < 128; b++) {
        out[b + 128] = te_add_dsp_stage_b(b, b_off21, mb, rb, eb);
    }
}
void t_stage_out(const int32_t *x, int32_t n, int32_t mo, int32_t ro, int32_t eo, int32_t *out)
{
    for (int32_t i = 0; i < n; i++) {
        out[i] = te_add_dsp_stage_out(x[i], mo, ro, eo);
    }
}
"""


@functools.cache
def _lib() -> ctypes.CDLL:
    """te_add_s8, te_add_s8_dsp and a shim exporting its stages, built for the host."""
    d = Path(tempfile.mkdtemp(prefix="te_add_"))
    (d / "shim.c").write_text(SHIM)
    out = d / "libteadd.so"
    subprocess.run(["gcc", *CFLAGS, "-I", str(KERNELS), "-o", str(out), str(d / "shim.c"),
                    str(KERNELS / "te_add_s8.c"), str(KERNELS / "te_add_s8_dsp.c")],
                   check=True, capture_output=True, text=True)
    return ctypes.CDLL(str(out))


def _rng(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


# -- stages -----------------------------------------------------------------------------------
def _stage_b(b_off, mb, rb, eb):
    out = np.zeros(256, np.int32)
    _lib().t_stage_b(I32(b_off << 21), I32(mb), I32(rb), I32(eb), ptr(out))
    return out.astype(np.int64)


def test_stage_b_exhaustive():
    """RDBPOT(SRDHM((b + off) 2^20, m), e) for all 256 b, many (m, e, off), with and without an
    a_offset folded into the rounding constant (te_add_s8_dsp.h, step 2)."""
    rng = _rng("stage_b")
    b = np.arange(-128, 128, dtype=np.int64)
    cases = [(m, e, off) for m in (0, 1, 1 << 30, (1 << 31) - 1) for e in (0, 1, 2, 19, 30, 31)
             for off in (-127, 0, 128)]
    cases += [(int(rng.integers(1 << 30, 1 << 31)), int(rng.integers(0, 32)),
               int(rng.integers(-127, 129))) for _ in range(600)]
    cases += [(int(rng.integers(1 << 30, 1 << 31)), int(rng.integers(1, 5)),
               int(rng.integers(-127, 129))) for _ in range(400)]         # the usual shifts
    sign_mattered = 0
    for m, e, off in cases:
        want = quant.multiply_by_quantized_multiplier_smaller_than_one_exp((b + off) << 20, m, -e)
        rb = (1 << (e - 1)) if e else 0
        got = _stage_b(off, m, rb, e)
        assert np.array_equal(got, want), (m, e, off, np.flatnonzero(got != want)[:5])
        for k in (-127, -1, 128):                   # a_offset folded in where the kernel would
            rb_fold = rb + k * (1 << (19 + e))
            if abs(rb_fold) < 3 << 29:
                got = _stage_b(off, m, rb_fold, e)
                assert np.array_equal(got, want + k * (1 << 19)), (m, e, off, k)
        if e:   # the test can tell: dropping the - [A < 0] correction changes some results
            s = quant.saturating_rounding_doubling_high_mul((b + off) << 20, m)
            sign_mattered += int(np.any((s + (1 << (e - 1))) >> e != want))
    assert sign_mattered > 100


def test_stage_out():
    """(SMMLAR(2 S, mo, R) - [S < 0]) >> eo = RDBPOT(SRDHM(S, mo), eo) + zo for S over the
    whole range the kernel produces (|S| < 2^29), and S around the rounding ties of RDBPOT."""
    rng = _rng("stage_out")
    sign_mattered = 0
    for trial in range(300):
        mo = int(rng.integers(1 << 30, 1 << 31)) if trial % 10 else 1 << 30
        eo = int(rng.integers(1, 32))
        zo = int(rng.integers(-128, 128))
        s = rng.integers(-(1 << 29) + 1, 1 << 29, size=200, dtype=np.int64)
        # S where SRDHM(S, mo) lands on a tie of RDBPOT (q = k 2^eo +- 2^(eo-1))
        q = (rng.integers(-300, 300, size=50) << eo) + (1 << (eo - 1))
        q = q[np.abs(q) < (1 << 28)]
        near = (q << 31) // mo
        s = np.concatenate([s, (near[:, None] + np.arange(-3, 4)).ravel(), [0, -1, 1]])
        s = s[np.abs(s) < (1 << 29)]
        q = quant.saturating_rounding_doubling_high_mul(s, mo)
        want = quant.rounding_divide_by_pot(q, eo) + zo
        r = (2 * zo + 1) * (1 << (eo - 1))
        post = abs(r) >= 1 << 30
        if post:
            r = 1 << (eo - 1)
        x = np.ascontiguousarray((2 * s).astype(np.int32))
        out = np.zeros(x.size, np.int32)
        _lib().t_stage_out(ptr(x), I32(x.size), I32(mo), I32(r), I32(eo), ptr(out))
        got = out.astype(np.int64) + (zo if post else 0)
        assert np.array_equal(got, want), (mo, eo, zo, np.flatnonzero(got != want)[:5])
        sign_mattered += int(np.any(((r + q) >> eo) + (zo if post else 0) != want))
    assert sign_mattered > 100     # without - [S < 0] the ties would round the wrong way


# -- the kernel against te_add_s8 ---------------------------------------------------------------
def _params(s1, s2, so, zp1, zp2, zpo, act=(-128, 127)) -> dict:
    p = add_params(s1, s2, so)
    p.update(in1_offset=-zp1, in2_offset=-zp2, out_offset=zpo, act_min=act[0], act_max=act[1])
    return p


def _args(p):
    return [I32(int(p[k])) for k in ("in1_offset", "in1_mult", "in1_shift", "in2_offset",
                                     "in2_mult", "in2_shift", "left_shift", "out_offset",
                                     "out_mult", "out_shift", "act_min", "act_max")]


def _run(fn, a, b, p, alias=None):
    """Run te_add_s8[_dsp] on copies of a, b; alias 1 / 2: out is in1's / in2's buffer."""
    a, b = np.array(a, np.int8), np.array(b, np.int8)
    out = {1: a, 2: b}.get(alias, np.zeros(a.size, np.int8))
    getattr(_lib(), fn)(ptr(a), ptr(b), ptr(out), I32(a.size), *_args(p))
    return out


def _check(a, b, p, alias=None):
    want = _run("te_add_s8", a, b, p)
    got = _run("te_add_s8_dsp", a, b, p, alias)
    assert np.array_equal(got, want), (p, alias, np.flatnonzero(got != want)[:5])
    return want


def _random_layer(rng) -> dict:
    s1 = float(np.exp(rng.uniform(np.log(1e-3), np.log(0.5))))
    s2 = s1 * float(np.exp(rng.uniform(np.log(1 / 40), np.log(40))))
    so = max(s1, s2) * float(np.exp(rng.uniform(np.log(0.3), np.log(6))))
    zps = [int(v) for v in rng.integers(-128, 128, size=3)]
    act = [(-128, 127), (-128, 127), (zps[2], 127), (zps[2], min(127, zps[2] + 40)),
           (-5, 5)][int(rng.integers(0, 5))]
    return _params(s1, s2, so, *zps, act=act)


# an mcunet-like layer and layers that take the kernel's other paths
SPECIAL = {
    "mcunet_eb1": _params(0.05, 0.03, 0.06, 6, -14, -8),
    "in2_exact_eb3": _params(0.006, 0.04, 0.05, -3, 9, 5, act=(5, 127)),
    "equal_scales_ties": _params(0.02, 0.02, 0.04, -128, -128, -128, act=(-128, 127)),
    "equal_scales_zps": _params(0.02, 0.02, 0.04, -128, 127, -128),
    "out_offset_after_shift": _params(0.01, 0.008, 0.5, 20, -7, 100),
    "offset_not_folded": _params(0.05, 0.001, 0.06, 100, -3, 2),
    "offset_not_folded_relu6": _params(0.05, 0.001, 0.06, -128, 127, -100, act=(-100, -60)),
    "narrow_act": _params(0.03, 0.05, 0.02, 1, 2, 3, act=(-1, 1)),
}


def _path(p) -> tuple:
    """The kernel's choice for these arguments (te_add_s8_dsp.c): (exact input, eb, a_offset
    folded, out_offset after the shift, act range full)."""
    exact = next(i for i in (1, 2) if (p[f"in{i}_mult"], p[f"in{i}_shift"]) == (1 << 30, 0))
    other = 3 - exact
    eb, eo = -p[f"in{other}_shift"], -p["out_shift"]
    rb = ((1 << (eb - 1)) if eb else 0) + p[f"in{exact}_offset"] * (1 << (19 + eb))
    post = abs((2 * p["out_offset"] + 1) * (1 << (eo - 1))) >= 1 << 30
    return exact, eb, abs(rb) < 3 << 29, post, (p["act_min"], p["act_max"]) == (-128, 127)


def test_special_layers_cover_every_path():
    paths = [_path(p) for p in SPECIAL.values()]
    paths += [_path(_params(qa[0], qb[0], qo[0], qa[1], qb[1], qo[1])) for qa, qb, qo, _ in LAYERS]
    assert {x[0] for x in paths} == {1, 2}
    assert {x[1] for x in paths} >= {0, 1, 2, 3, 4} and max(x[1] for x in paths) >= 5
    assert {x[2] for x in paths} == {True, False}
    assert {x[3] for x in paths} == {True, False}
    assert {x[4] for x in paths} == {True, False}


def test_fast_path_preconditions_hold_for_tflite_scales():
    """add_params gives the larger-scale input (2^30, 0) (te_add_s8_dsp.h: the fast path)."""
    rng = _rng("exact")
    for _ in range(2000):
        s1 = float(np.exp(rng.uniform(-12, 3)))
        s2 = s1 * float(np.exp(rng.uniform(-5, 5)))
        p = add_params(s1, s2, 4 * max(s1, s2))
        big = 1 if s1 >= s2 else 2
        assert (p[f"in{big}_mult"], p[f"in{big}_shift"]) == (1 << 30, 0)
        assert p["out_shift"] <= -1 and all(-31 <= p[k] <= 0 for k in ("in1_shift", "in2_shift"))


@pytest.mark.parametrize("name", sorted(SPECIAL))
def test_dsp_equals_portable_all_pairs_special(name):
    p = SPECIAL[name]
    a, b = ALL_PAIRS[:, 0], ALL_PAIRS[:, 1]
    want = _check(a, b, p)
    swapped = dict(p)
    for k in ("offset", "mult", "shift"):
        swapped[f"in1_{k}"], swapped[f"in2_{k}"] = p[f"in2_{k}"], p[f"in1_{k}"]
    _check(b, a, swapped)                   # the exact input on the other side
    assert len(np.unique(want)) > 2, "degenerate layer: (almost) constant output"


def test_dsp_equals_portable_all_pairs_random():
    rng = _rng("random layers")
    for _ in range(120):
        p = _random_layer(rng)
        _check(ALL_PAIRS[:, 0], ALL_PAIRS[:, 1], p)


def test_dsp_equals_portable_sizes_and_aliasing():
    rng = _rng("sizes")
    layers = list(SPECIAL.values()) + [_random_layer(rng) for _ in range(20)]
    for i, p in enumerate(layers):
        for n in (0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 64, 101, 1003):
            a = rng.integers(-128, 128, n).astype(np.int8)
            b = rng.integers(-128, 128, n).astype(np.int8)
            for alias in (None, 1, 2):
                _check(a, b, p, alias)


def test_dsp_falls_back_exactly():
    """Arguments outside the fast path (no input with (2^30, 0), another left shift, a
    multiplier of 0, shift 0 on the output): te_add_elem_s8, still equal to te_add_s8."""
    rng = _rng("fallback")
    a, b = ALL_PAIRS[:, 0], ALL_PAIRS[:, 1]
    base = _params(0.05, 0.03, 0.06, 6, -14, -8)
    for p in (
        {**base, "in1_mult": 1 << 30, "in1_shift": -1, "in2_mult": 1600000000},
        {**base, "left_shift": 19},
        {**base, "in2_mult": 0},
        {**base, "in2_mult": 0, "in2_shift": 0},
        {**base, "out_shift": 0, "out_mult": 1 << 30, "out_offset": 0},
        {**base, "in2_shift": -31},
    ):
        _check(a, b, p)
        _check(a, b, p, alias=int(rng.integers(1, 3)))


# -- QEMU: the assembly loops against TFLM ------------------------------------------------------
LAYERS = [  # (scale, zp) of in1, in2, out; activation
    ((0.05, 6), (0.03, -14), (0.06, -8), "NONE"),                   # mcunet-like, exact in1
    ((0.011, -3), (0.04, 9), (0.05, 5), "RELU"),                    # exact in2, shift -2
    ((0.02, -128), (0.02, -128), (0.04, -128), "RELU"),             # equal scales, ties
    ((0.03, 17), (0.003, -60), (0.035, 1), "RELU6"),                # shift -4, clamp pass
    ((0.01, 20), (0.008, -7), (0.5, 100), "NONE"),                  # out_offset after the shift
    ((0.05, 100), (0.001, -3), (0.06, 2), "NONE"),                  # a_offset not folded
    ((0.03, 1), (0.05, 2), (0.02, 3), "RELU_N1_TO_1"),
    ((0.07, -5), (0.07, 40), (0.09, -20), "NONE"),                  # equal scales
]
SIDE = 64                       # 4096 elements a layer: 16 records give all 65536 pairs
ODD_SHAPE = (1, 5, 7, 3)        # 105 elements: the C tail after the assembly blocks


def _qemu_model() -> bytes:
    mb = ModelBuilder("te_add_s8_dsp test")
    ins, outs = [], []
    shapes = [(1, SIDE, SIDE, 1)] * len(LAYERS) + [ODD_SHAPE, ODD_SHAPE]
    layers = LAYERS + [LAYERS[0], LAYERS[3]]
    for i, ((qa, qb, qo, act), shape) in enumerate(zip(layers, shapes)):
        a = mb.tensor(f"a{i}", shape, "int8", scale=qa[0], zero_point=qa[1])
        b = mb.tensor(f"b{i}", shape, "int8", scale=qb[0], zero_point=qb[1])
        y = mb.tensor(f"y{i}", shape, "int8", scale=qo[0], zero_point=qo[1])
        mb.op("ADD", [a, b], [y], fused_activation_function=act)
        ins += [a, b]
        outs.append(y)
    mb.inputs(ins)
    mb.outputs(outs)
    return mb.build()


def _records(graph) -> list:
    """Record r: in1 runs through all 256 values, in2 through values 16 r .. 16 r + 15 (every
    pair once over 16 records); the odd-shaped layers get random values."""
    rng = _rng("records")
    i = np.arange(SIDE * SIDE)
    records = []
    for r in range(16):
        a = (i & 255) - 128
        b = (i >> 8) + 16 * r - 128
        rec = []
        for k, t in enumerate(graph.inputs):
            shape = graph.tensors[t].shape
            if int(np.prod(shape)) == SIDE * SIDE:
                rec.append((a if k % 2 == 0 else b).astype(np.int8).reshape(shape))
            else:
                rec.append(rng.integers(-128, 128, size=shape).astype(np.int8))
        records.append(rec)
    return records


@pytest.mark.qemu
def test_add_dsp_on_qemu_all_pairs(tmp_path):
    path = tmp_path / "adds.tflite"
    path.write_bytes(_qemu_model())
    host = compile_model(path, CompileOptions(board="host"))
    records = _records(host.graph)
    golden = run_tflm_many(path, records)
    assert all(n.params["kernel"] == "te_add_s8" for n in host.graph.nodes)
    for board in ("stm32f746", "stm32f411"):
        c = compile_model(path, CompileOptions(board=board))
        assert all(n.params["kernel"] == "te_add_s8_dsp" for n in c.graph.nodes)
        out = tmp_path / f"proj_{board}"
        write_project(c, out)
        assert not (out / "kernels" / "te_add_s8.c").exists()
        hio = host_io_of(c.graph)
        result = runner.run(out, [hio.to_device(r) for r in records], output_specs(c.graph))
        for r, (g_rec, o_rec) in enumerate(zip(golden, result.outputs)):
            for k, (g, y) in enumerate(zip(g_rec, hio.from_device(o_rec))):
                g = np.asarray(g).reshape(y.shape)
                assert np.array_equal(y, g), \
                    f"{board} record {r} layer {k}: {np.count_nonzero(y != g)} of {y.size} differ"
    for k in range(len(golden[0])):
        assert len(np.unique(np.concatenate([np.ravel(g[k]) for g in golden]))) > 2, k
