"""Bit-packed per-channel parameters (tinyengine/ops/chanpack.py, te_unpack_channels.c).

The C decoder must rebuild, byte for byte, the table the DSP kernels read today; the models'
bit-exactness with TFLM (tests/test_models.py) then covers the rest.
"""
import ctypes

import numpy as np
import pytest

from tests.ckernels import load_kernels, ptr
from tinyengine import ops
from tinyengine.compiler import CompileOptions, compile_model
from tinyengine.ops import chanpack


def _c_unpack(packed, n, group, size):
    out = np.full(size // 4 + 8, 0x5A5A5A5A, dtype=np.int32)     # canary after the table
    load_kernels().te_unpack_channels(ptr(packed), ctypes.c_int32(n), ctypes.c_int32(group),
                                      ptr(out))
    assert (out[size // 4:] == 0x5A5A5A5A).all(), "te_unpack_channels wrote past its table"
    return out[:size // 4]


def _random_params(rng, n, group, wa, wm, wb):
    def vals(w, lo_bias):
        lo = int(rng.integers(-2**31, 2**31 - 2**w)) if lo_bias else 0
        return lo + rng.integers(0, 1 << w, n, dtype=np.int64) if w else np.full(n, lo)
    acc = vals(wa, True)
    mult = vals(wm, False) + (rng.integers(0, 2) << 30 if wm < 31 else 0)
    byte = vals(wb, False) & 0xFF
    return chanpack.ChannelParams(acc, mult, byte, group)


@pytest.mark.parametrize("widths", [(0, 0, 0), (1, 0, 0), (0, 31, 0), (31, 31, 1), (20, 30, 5),
                                    (17, 30, 4), (22, 31, 5), (24, 30, 3), (26, 30, 2),
                                    (24, 31, 8), (16, 16, 8)])
@pytest.mark.parametrize("n", [1, 3, 4, 5, 37, 480])
def test_c_decoder_rebuilds_the_table(widths, n):
    rng = np.random.default_rng(n * 1000 + sum(widths))
    for group in sorted({1, 4, n}):
        cp = _random_params(rng, n, group, *widths)
        assert chanpack.packable(cp)
        packed = chanpack.pack(cp)
        want = chanpack.table(cp)
        assert want.nbytes == chanpack.table_bytes(n, group)
        assert np.array_equal(chanpack.unpack(packed, n, group), want)
        assert np.array_equal(_c_unpack(packed, n, group, want.nbytes), want)
        # records of more than 57 bits are padded to 64 (byte-aligned reads stay in range)
        w = sum(chanpack.widths(cp))
        assert packed.nbytes == 4 * (3 + -(-n * (w if w <= 57 else 64) // 32) + 2)


def test_fields_beyond_the_limits_are_not_packable():
    n = 8
    wide_acc = chanpack.ChannelParams(np.array([-2**31, 2**31 - 1] * 4), np.full(n, 1 << 30),
                                      np.zeros(n), 4)
    assert not chanpack.packable(wide_acc)
    with pytest.raises(ValueError):
        chanpack.pack(wide_acc)
    acc_and_byte = chanpack.ChannelParams(np.arange(n) << 26, np.full(n, 1 << 30),
                                          np.arange(n) * 30, 4)      # 29 + 8 bits > 32
    assert not chanpack.packable(acc_and_byte)


def test_depthwise_rq_table_round_trips():
    rng = np.random.default_rng(7)
    for n in (1, 4, 6, 48, 51):
        cp = _random_params(rng, n, 4, 19, 30, 5)
        words = chanpack.table(cp)
        back = chanpack.split_table(words, n, 4)
        assert np.array_equal(chanpack.table(back), words)
        with pytest.raises(ValueError):
            chanpack.split_table(words[:-1], n, 4)


MODELS = ["mcunet/mcunet-vww1.tflite", "mlperf_tiny/vww_96_int8.tflite",
          "mlperf_tiny/kws_ref_model.tflite", "mlperf_tiny/pretrainedResnet_quant.tflite"]


@pytest.mark.parametrize("model", MODELS)
def test_real_layers_pack_exactly_and_never_raise_the_arena(model, models_dir):
    """Every DSP layer of the shared models: C decode == the table its kernel reads; the
    compiler packs layers only where the arena stays the same, and saves Flash doing so."""
    path = models_dir / model
    plain = compile_model(path, CompileOptions(board="stm32f746", compact_params=False))
    packed = compile_model(path, CompileOptions(board="stm32f746"))
    assert packed.plan.arena_bytes == plain.plan.arena_bytes
    checked = 0
    for node in plain.graph.nodes:
        cp = ops.get(node.op).channel_params(node)
        if cp is None or not chanpack.packable(cp):
            continue
        words = chanpack.pack(cp)
        want = chanpack.table(cp)
        assert np.array_equal(_c_unpack(words, cp.n, cp.group, want.nbytes), want), node.name
        checked += 1
    assert checked > 0
    n_packed = sum("rq_packed" in n.params for n in packed.graph.nodes)
    if "mcunet" in model:
        assert n_packed >= 40    # nearly every layer of MCUNet has room for its table


@pytest.mark.qemu
def test_packed_model_is_smaller_and_bit_exact_on_qemu(models_dir, tmp_path):
    """mcunet-vww1 with and without packing: same outputs as TFLM, less Flash with it."""
    from tinyengine import cli

    flash = {}
    for flag in ([], ["--no-compact-params"]):
        out = tmp_path / ("plain" if flag else "packed")
        rc = cli.main(["verify", str(models_dir / "mcunet/mcunet-vww1.tflite"), "--board",
                       "stm32f746", "-o", str(out), "-n", "1", *flag])
        assert rc == 0
        import json
        report = json.loads((out / "report.json").read_text())
        flash[bool(flag)] = report["flash_bytes"]
        if not flag:
            assert report["compact_params"]["layers"] >= 40
            saved = report["compact_params"]["flash_saved_bytes"]
    assert flash[True] - flash[False] >= 0.8 * saved   # the decoder and its calls are small
    # regression guard: measured 481,820 B (weights 445,128 B; BENCHMARKS.md), +1%
    assert flash[False] <= 481_820 * 1.01, flash[False]
