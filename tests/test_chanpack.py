"""Bit-packed per-channel parameters (tinyengine/ops/chanpack.py, te_unpack_channels.c).

The C decoder must rebuild, byte for byte, the table the DSP kernels read today; the models'
bit-exactness with TFLM (tests/test_models.py) then covers the rest.
"""
import ctypes
import re
from pathlib import Path

import numpy as np
import pytest

from tests.ckernels import load_kernels, ptr
from tinyengine import ops
from tinyengine.compiler import CompileOptions, compile_model
from tinyengine.ops import chanpack
from tinyengine.ops.conv import per_channel_multipliers


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


# record lengths of every residue mod 8 (the decoder's step pattern repeats after 8, 4, 2 or 1
# records), 64-bit records, and empty mult / acc / byte fields
WIDTHS = [(0, 0, 0), (1, 0, 0), (0, 31, 0), (31, 31, 1), (20, 30, 5), (17, 30, 4), (22, 31, 5),
          (24, 30, 3), (26, 30, 2), (24, 31, 8), (16, 16, 8), (14, 30, 2), (18, 30, 2),
          (16, 30, 6), (0, 0, 4), (20, 0, 5), (0, 30, 3), (20, 30, 0), (31, 1, 1), (3, 2, 1)]


@pytest.mark.parametrize("widths", WIDTHS)
@pytest.mark.parametrize("n", [1, 3, 4, 5, 37, 480])
def test_c_decoder_rebuilds_the_table(widths, n):
    rng = np.random.default_rng(n * 1000 + sum(widths))
    for group in sorted({1, 2, 3, 4, 8, 12, n}):
        cp = _random_params(rng, n, group, *widths)
        assert chanpack.packable(cp, exceptions=False)
        plain = chanpack.pack(cp, exceptions=False)
        packed = chanpack.pack(cp)        # exception lists where they save words (small n)
        assert packed.nbytes <= plain.nbytes
        want = chanpack.table(cp)
        assert want.nbytes == chanpack.table_bytes(n, group)
        for words in (plain, packed):
            assert np.array_equal(chanpack.unpack(words, n, group), want)
            assert np.array_equal(_c_unpack(words, n, group, want.nbytes), want)
        # records of more than 57 bits are padded to 64 (byte-aligned reads stay in range)
        w = sum(chanpack.widths(cp, exceptions=False))
        assert plain.nbytes == 4 * (3 + -(-n * (w if w <= 57 else 64) // 32) + 2)


def _with_random_gaps(packed, n, rng):
    """The packed words with bits W .. 63 of every 64-bit record set at random."""
    w = sum(((int(packed[2]) >> s) & 0xFF) for s in (8, 16, 24))
    bits = np.unpackbits(packed[3:].view(np.uint8), bitorder="little")
    for c in range(n):
        bits[c * 64 + w:(c + 1) * 64] = rng.integers(0, 2, 64 - w)
    return np.concatenate([packed[:3], np.packbits(bits, bitorder="little").view(np.uint32)])


@pytest.mark.parametrize("widths", [(31, 31, 1), (22, 31, 5), (26, 30, 2), (25, 30, 5)])
def test_unused_bits_of_64_bit_records_do_not_matter(widths):
    rng = np.random.default_rng(sum(widths))
    for n, group in ((37, 4), (40, 40), (13, 5)):
        cp = _random_params(rng, n, group, *widths)
        w = sum(chanpack.widths(cp, exceptions=False))
        assert w > 57
        plain = chanpack.pack(cp, exceptions=False)
        packed = _with_random_gaps(plain, n, rng)
        assert not np.array_equal(packed, plain)
        want = chanpack.table(cp)
        assert np.array_equal(chanpack.unpack(packed, n, group), want)
        assert np.array_equal(_c_unpack(packed, n, group, want.nbytes), want)


def test_no_channels_write_nothing():
    packed = chanpack.pack(_random_params(np.random.default_rng(3), 4, 4, 20, 30, 5))
    for n in (0, -1):
        assert _c_unpack(packed, n, 4, 0).size == 0      # the canary after a 0-byte table


def test_fields_beyond_the_limits_are_not_packable():
    """Without exception lists, fields beyond the decoder's limits cannot be packed; with them
    the outliers are listed, the fields fit and the table comes back exactly; a multiplier
    field of 32 bits (not listable) never fits."""
    n = 8
    wide_acc = chanpack.ChannelParams(np.array([-2**31, 2**31 - 1] * 4), np.full(n, 1 << 30),
                                      np.zeros(n), 4)
    acc_and_byte = chanpack.ChannelParams(np.arange(n) << 26, np.full(n, 1 << 30),
                                          np.arange(n) * 30, 4)      # 29 + 8 bits > 32
    for cp in (wide_acc, acc_and_byte):
        assert not chanpack.packable(cp, exceptions=False)
        with pytest.raises(ValueError):
            chanpack.pack(cp, exceptions=False)
        assert chanpack.packable(cp)
        wa, wm, wb = chanpack.widths(cp)
        assert wa <= 31 and wa + wb <= 32
        assert sum(map(len, chanpack.exception_channels(cp))) > 0
        packed = chanpack.pack(cp)
        want = chanpack.table(cp)
        assert np.array_equal(chanpack.unpack(packed, n, 4), want)
        assert np.array_equal(_c_unpack(packed, n, 4, want.nbytes), want)
    wide_mult = chanpack.ChannelParams(np.zeros(n), np.array([-2**31, 2**31 - 1] * 4),
                                       np.zeros(n), 4)
    assert not chanpack.packable(wide_mult)
    with pytest.raises(ValueError):
        chanpack.pack(wide_mult)


def test_depthwise_rq_table_round_trips():
    rng = np.random.default_rng(7)
    for n in (1, 4, 6, 48, 51):
        cp = _random_params(rng, n, 4, 19, 30, 5)
        words = chanpack.table(cp)
        back = chanpack.split_table(words, n, 4)
        assert np.array_equal(chanpack.table(back), words)
        with pytest.raises(ValueError):
            chanpack.split_table(words[:-1], n, 4)


def _derived_params(rng, n, group, in_s=None, out_s=None, w_scales=None, dead=0):
    """Channels with TFLite's multipliers of random float32 scales (conv.per_channel_multipliers),
    `dead` of them zeroed as requant_dsp does, and random accumulators and bytes."""
    in_s = np.float32(in_s if in_s is not None else np.exp(rng.uniform(-6, 0)))
    out_s = np.float32(out_s if out_s is not None else np.exp(rng.uniform(-6, 0)))
    if w_scales is None:
        w_scales = np.exp(rng.uniform(-9, -2, n)).astype(np.float32)
    mult, _ = per_channel_multipliers(in_s, w_scales, out_s, n)
    mult = mult.astype(np.int64)
    mult[rng.choice(n, dead, replace=False)] = 0
    acc = int(rng.integers(-2**20, 2**20)) + rng.integers(0, 1 << 18, n)
    byte = rng.integers(3, 11, n)
    return chanpack.ChannelParams(acc, mult, byte, group, scales=(float(in_s), float(out_s)))


# 1 + 2^-23 times 1 - 2^-23 is 1 - 2^-46: QuantizeMultiplier rounds it up to 2^31 -> 2^30
OVERFLOW = dict(in_s=1 + 2.0**-23, out_s=1.0,
                w_scales=np.float32([1 - 2.0**-23, *np.linspace(0.5, 0.99, 39)]))


@pytest.mark.parametrize("n", [1, 4, 7, 48, 480])
def test_derived_multipliers_rebuild_the_table(n):
    """Layers whose multipliers are TFLite's of float32 scales store 23-24-bit codes and K;
    C decoder == Python twin == the table, for every grouping."""
    rng = np.random.default_rng(n)
    for group in sorted({1, 3, 4, n}):
        for dead in sorted({0, 1, n // 3}):
            cp = _derived_params(rng, n, group, dead=dead)
            codes, k = chanpack.mult_codes(cp)
            assert [chanpack.derive_mult(int(f), k) for f in codes] == cp.mult.tolist()
            packed = chanpack.pack(cp)
            if n >= 16:      # 6-7 bits a channel saved, more than K's 64
                assert (packed[2] >> 16) & chanpack.DERIVED
                assert chanpack.widths(cp)[1] <= (24 if dead else 23)
            want = chanpack.table(cp)
            assert np.array_equal(chanpack.unpack(packed, n, group), want)
            assert np.array_equal(_c_unpack(packed, n, group, want.nbytes), want)


def test_derived_multiplier_rounding_up_to_two_to_the_31():
    cp = _derived_params(np.random.default_rng(0), 40, 4, **OVERFLOW)
    assert cp.mult[0] == 1 << 30              # TFLite's halved multiplier (its shift + 1)
    assert chanpack.mult_codes(cp)[0][0] == (1 << 24) - 2      # f of 1 - 2^-23
    packed = chanpack.pack(cp)
    assert (packed[2] >> 16) & chanpack.DERIVED
    want = chanpack.table(cp)
    assert np.array_equal(chanpack.unpack(packed, 40, 4), want)
    assert np.array_equal(_c_unpack(packed, 40, 4, want.nbytes), want)


def test_codes_searched_at_once_are_the_scalar_search_codes():
    """mult_codes searches every channel's code at once (_codes_of); it finds the code the
    per-channel search (_code_of) finds, the lowest candidate in its order (packed tables,
    hence generated C, depend on which), and None where any channel has none."""
    rng = np.random.default_rng(11)
    for i in range(300):
        k = chanpack._ratio_constant((float(np.exp(rng.uniform(-8, 1))),
                                      float(np.exp(rng.uniform(-8, 1)))))
        n = int(rng.integers(1, 24))
        mults = np.array([chanpack.derive_mult(int(f), k)
                          for f in rng.integers(1 << 23, 1 << 24, n)], dtype=np.int64)
        if i % 3 == 1:
            mults[rng.integers(n)] = rng.choice([0, 1 << 30, (1 << 31) - 1, -(1 << 30), 1])
        elif i % 3 == 2:
            mults += rng.integers(-1, 2, n)
        want = [chanpack._code_of(int(m), k) for m in mults]
        got = chanpack._codes_of(mults, k)
        if None in want:
            assert got is None
        else:
            assert got is not None and got.tolist() == want


def test_multipliers_without_codes_stay_stored():
    """Multipliers that are not TFLite's of the given scales (or no scales): plain fields."""
    rng = np.random.default_rng(5)
    cp = _derived_params(rng, 40, 40)
    cp.mult = cp.mult.copy()
    cp.mult[7] += 1                     # not the multiplier of any float32 weight scale
    assert chanpack.mult_codes(cp) is None
    cp.scales = None
    for params in (cp, _random_params(rng, 40, 4, 18, 30, 3)):
        packed = chanpack.pack(params)
        assert not (packed[2] >> 16) & chanpack.DERIVED
        want = chanpack.table(params)
        assert np.array_equal(_c_unpack(packed, 40, params.group, want.nbytes), want)


def _negative_multiplier_params(rng, n, group, mixed):
    """Channels with negative TFLite multipliers (negative weight scales that the compiler
    could not fold into the weights): all in [-2^31, -2^30] (-2^31 included), or (mixed) both
    signs and 0 within a 31-bit span."""
    acc = rng.integers(-2**20, 2**20, n)
    if mixed:
        mult = rng.integers(-2**29, 2**29, n)
        mult[n // 2] = 0
    else:
        mult = -rng.integers(1 << 30, (1 << 31) + 1, n)
        mult[0] = -(1 << 31)
    return chanpack.ChannelParams(acc, mult, rng.integers(1, 32, n), group)


@pytest.mark.parametrize("mixed", [False, True])
def test_negative_multipliers_round_trip(mixed):
    """Negative multipliers are stored as plain fields (no codes: those are for TFLite's
    positive multipliers) and rebuilt exactly by the C decoder and its Python twin."""
    rng = np.random.default_rng(17 + mixed)
    for n, group in ((1, 1), (5, 4), (37, 37), (40, 4)):
        cp = _negative_multiplier_params(rng, n, group, mixed)
        assert chanpack.packable(cp)
        packed = chanpack.pack(cp)
        assert not (packed[2] >> 16) & chanpack.DERIVED
        want = chanpack.table(cp)
        assert np.array_equal(chanpack.split_table(want, n, group).mult, cp.mult)
        assert np.array_equal(chanpack.unpack(packed, n, group), want)
        assert np.array_equal(_c_unpack(packed, n, group, want.nbytes), want)
    # both signs at full size span 32 bits: not packable, so the layer keeps its plain table
    cp = _negative_multiplier_params(rng, 8, 8, False)
    cp.mult[1] = (1 << 31) - 1
    assert not chanpack.packable(cp)
    cp.scales = (0.02, 0.1)
    assert chanpack.mult_codes(cp) is None


def _with_outliers(cp, rng, n_acc, n_byte):
    """cp with n_acc channels' accumulator starts anywhere in int32 (the extremes included) and
    n_byte channels' shift bytes far above the rest (the last channel always among them, in
    the last, possibly short, group); also the changed channels (acc, byte)."""
    acc, byte = cp.acc.astype(np.int64), cp.byte.astype(np.int64)
    a = np.sort(rng.choice(cp.n, n_acc, replace=False))
    b = np.unique(np.r_[rng.choice(cp.n, n_byte, replace=False)[:n_byte - 1], cp.n - 1])
    b = b[:n_byte]
    acc[a] = rng.choice([-2**31, 2**31 - 1, *rng.integers(-2**31, 2**31, 4)], a.size)
    byte[b] = rng.integers(100, 256, b.size)
    out = chanpack.ChannelParams(acc, cp.mult, byte, cp.group, scales=cp.scales)
    return out, a, b


def _scramble_listed(packed, cp, rng):
    """The packed words with random bits in the stream fields of the listed channels (their
    acc field for acc exceptions, shift-byte field for shift exceptions)."""
    h = int(packed[2])
    wa, wm, wb = (h >> 8) & 0x7F, (h >> 16) & 0x7F, h >> 24
    start = 3 + (2 if (h >> 16) & chanpack.DERIVED else 0)
    stride = wa + wm + wb if wa + wm + wb <= 57 else 64
    bits = np.unpackbits(packed.astype("<u4").view(np.uint8), bitorder="little")
    for listed, at, w in zip(chanpack.exception_channels(cp), (wm, wm + wa), (wa, wb)):
        for c in listed:
            first = 32 * start + c * stride + at
            bits[first:first + w] = rng.integers(0, 2, w)
    return np.packbits(bits, bitorder="little").view("<u4").astype(np.uint32)


# (n, group, acc outliers, shift-byte outliers, multiplier codes)
OUTLIERS = [(40, 40, 1, 0, False), (40, 4, 0, 1, False), (37, 4, 3, 2, False),
            (13, 3, 1, 1, False), (100, 12, 2, 3, False), (480, 480, 5, 7, False),
            (480, 4, 12, 3, False), (48, 4, 2, 2, True), (480, 480, 6, 4, True)]


def _outlier_layer(rng, n, group, n_acc, n_byte, codes):
    cp = (_derived_params(rng, n, group, dead=n // 10) if codes
          else _random_params(rng, n, group, 14, 30, 2))
    return _with_outliers(cp, rng, n_acc, n_byte)


@pytest.mark.parametrize("case", OUTLIERS)
def test_exception_lists_rebuild_the_table(case):
    """Layers whose few outlier channels (a far accumulator start, a shift byte apart) would
    widen a field for every channel store the field narrower and list the outliers: fewer
    bytes, and C decoder == Python twin == the table exactly, also with random bits in the
    listed channels' stream fields."""
    n, group, n_acc, n_byte, codes = case
    rng = np.random.default_rng(n * 100 + group * 10 + n_acc)
    cp, acc_out, byte_out = _outlier_layer(rng, n, group, n_acc, n_byte, codes)
    plain_w, w = chanpack.widths(cp, exceptions=False), chanpack.widths(cp)
    listed_acc, listed_byte = chanpack.exception_channels(cp)
    assert set(acc_out) <= set(listed_acc) and set(byte_out) <= set(listed_byte)
    assert (w[0] < plain_w[0]) == bool(n_acc) and (w[2] < plain_w[2]) == bool(n_byte), (w, plain_w)
    assert w[1] <= plain_w[1]        # codes, where acc fields narrow enough to make them pay
    packed = chanpack.pack(cp)
    assert (packed[2] >> 8) & chanpack.EXCEPTIONS
    assert bool((packed[2] >> 16) & chanpack.DERIVED) == codes
    if chanpack.packable(cp, exceptions=False):
        assert packed.nbytes < chanpack.pack(cp, exceptions=False).nbytes
    want = chanpack.table(cp)
    scrambled = _scramble_listed(packed, cp, rng)
    assert not np.array_equal(scrambled, packed)
    for words in (packed, scrambled):
        assert np.array_equal(chanpack.unpack(words, n, group), want)
        assert np.array_equal(_c_unpack(words, n, group, want.nbytes), want)


def test_exceptions_only_where_they_save_words():
    """Uniformly spread fields list nothing (the format is the plain one, no flag); an outlier
    that widens a one-word stream by a few bits costs more in lists than it saves."""
    rng = np.random.default_rng(1)
    for cp in (_random_params(rng, 480, 4, 18, 30, 3), _random_params(rng, 4, 4, 20, 30, 3)):
        assert not (chanpack.pack(cp)[2] >> 8) & chanpack.EXCEPTIONS
        assert np.array_equal(chanpack.pack(cp), chanpack.pack(cp, exceptions=False))
    few = chanpack.ChannelParams(np.array([0, 1, 2, 3, 16]), np.full(5, 1 << 30),
                                 np.array([5, 5, 6, 6, 5]), 4)
    assert chanpack.widths(few) == chanpack.widths(few, exceptions=False) == (5, 0, 1)
    more = chanpack.ChannelParams(np.array([0, 1, 2, 1 << 20]), np.full(4, 1 << 30),
                                  np.array([5, 5, 6, 6]), 4)      # 21-bit field, 3 stream words
    assert chanpack.widths(more) == (2, 0, 1) and chanpack.pack(more).nbytes == 4 * (3 + 1 + 3)
    assert chanpack.pack(more, exceptions=False).nbytes == 4 * (3 + 3 + 2)
    # the entries' 16-bit table offsets: no lists for a table of more than 64 KB (9 n bytes
    # with group = n), where int32-wide outliers then make the layer unpackable
    for n in (7281, 7282):
        cp = _with_outliers(_random_params(rng, n, n, 14, 30, 2), rng, 3, 0)[0]
        listed = chanpack.table_bytes(n, n) <= 0x10000
        assert listed == (n == 7281) and chanpack.packable(cp) == listed
        if listed:
            assert (chanpack.pack(cp)[2] >> 8) & chanpack.EXCEPTIONS


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


@pytest.mark.parametrize("model, lists", [("mlperf_tiny/kws_ref_model.tflite", False),
                                           ("mlperf_tiny/vww_96_int8.tflite", True)])
def test_exception_lists_only_where_they_pay_for_their_code(model, lists, models_dir, tmp_path):
    """A model keeps exception lists only where they save more than the decoder code that
    applies them; one whose tables list none leaves that code out (TE_UNPACK_EXCEPTIONS=0),
    and a model with lists never does (that would give wrong tables)."""
    from tinyengine.compiler import write_project

    c = compile_model(models_dir / model, CompileOptions(board="stm32f746"))
    tables = [n.params["rq_packed"] for n in c.graph.nodes if "rq_packed" in n.params]
    assert tables
    listed = any(chanpack.has_exceptions(t) for t in tables)
    assert listed == lists
    if not lists:    # kws: its lists would save less than EXCEPTION_CODE_BYTES
        gain = 0
        for node in c.graph.nodes:
            cp = ops.get(node.op).channel_params(node)
            if "rq_packed" in node.params:
                gain += chanpack.pack(cp, exceptions=False).nbytes - chanpack.pack(cp).nbytes
        assert 0 < gain < chanpack.EXCEPTION_CODE_BYTES
    write_project(c, tmp_path / "p")
    switches = next(line for line in (tmp_path / "p" / "Makefile").read_text().splitlines()
                    if line.startswith("KERNEL_SWITCHES"))
    assert ("-DTE_UNPACK_EXCEPTIONS=0" in switches) == (not lists), switches


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
    # issue 4's limit: the weights (445,128 B, bench/run.py's model_weights) + 32 KB;
    # measured 475,832 B (BENCHMARKS.md)
    assert flash[False] <= 445_128 + 32_768, flash[False]


def _qemu_cases():
    """(packed words, n, group, table) covering the decoder's paths: every step-pattern length,
    64-bit records with random unused bits, empty fields, groups of 1..12 and n, exception
    lists (random bits in the listed channels' fields; with multiplier codes too)."""
    rng = np.random.default_rng(11)
    cases = []
    for widths in WIDTHS:
        for n, group in ((1, 1), (3, 3), (5, 4), (8, 8), (13, 2), (37, 37), (40, 4), (26, 12)):
            cp = _random_params(rng, n, group, *widths)
            packed = chanpack.pack(cp, exceptions=False)
            if sum(chanpack.widths(cp, exceptions=False)) > 57:
                packed = _with_random_gaps(packed, n, rng)
            cases.append((packed, n, group, chanpack.table(cp)))
    for case in OUTLIERS[1:4] + OUTLIERS[-2:-1]:               # exception lists
        cp = _outlier_layer(rng, *case)[0]
        packed = _scramble_listed(chanpack.pack(cp), cp, rng)
        assert (packed[2] >> 8) & chanpack.EXCEPTIONS
        cases.append((packed, cp.n, cp.group, chanpack.table(cp)))
    for mixed in (False, True):                               # negative multipliers
        cp = _negative_multiplier_params(rng, 13, 4, mixed)
        cases.append((chanpack.pack(cp), cp.n, cp.group, chanpack.table(cp)))
    for n, group in ((17, 3), (40, 4), (37, 37), (48, 4)):    # multiplier codes
        for cp in (_derived_params(rng, n, group, dead=n // 4),
                   _derived_params(rng, n, group, **OVERFLOW) if n == 40 else None):
            if cp is not None:
                packed = chanpack.pack(cp)
                assert (packed[2] >> 16) & chanpack.DERIVED
                cases.append((packed, n, group, chanpack.table(cp)))
    return cases


@pytest.mark.qemu
@pytest.mark.parametrize("board", ["stm32f746", "stm32f411"])
def test_c_decoder_on_qemu(board, tmp_path):
    """The decoder as the firmware builds it (Cortex-M7 / M4, -O2), on the cases above: a
    project of one small model whose te_invoke() is replaced by the decoder's calls."""
    from tests.tflite_builder import ModelBuilder
    from tinyengine import runner
    from tinyengine.compiler import write_project

    mb = ModelBuilder("te_unpack_channels test")
    x = mb.tensor("x", (1, 4), "int8", scale=0.05, zero_point=0)
    y = mb.tensor("y", (1, 4), "int8", scale=0.05, zero_point=0)
    mb.op("ADD", [x, x], [y])
    mb.inputs([x])
    mb.outputs([y])
    (tmp_path / "m.tflite").write_bytes(mb.build())
    out = tmp_path / "proj"
    write_project(compile_model(tmp_path / "m.tflite", CompileOptions(board=board)), out)
    for f in (out / "kernels").glob("*.c"):
        f.unlink()                                   # the model's own kernels are not called
    kernels = Path(__file__).resolve().parents[1] / "firmware" / "kernels"
    for f in ("te_unpack_channels.c", "te_unpack_channels.h"):
        (out / "kernels" / f).write_text((kernels / f).read_text())
    # the ADD model packs no table, so its Makefile leaves the exception code out: keep it in
    mk = out / "Makefile"
    mk.write_text(re.sub(r"(?m)^KERNEL_SWITCHES :=.*$", "KERNEL_SWITCHES :=", mk.read_text()))

    cases = _qemu_cases()
    words = sum(t.size for *_, t in cases)
    lines = ['#include "model.h"', '#include "te_unpack_channels.h"']
    for i, (packed, *_) in enumerate(cases):
        lines.append(f"static const uint32_t pk{i}[{packed.size}] = "
                     "{" + ",".join(f"{int(v)}u" for v in packed) + "};")
    size = words + 8                                 # 8 canary words after the last table
    lines += [f"static int32_t te_tables[{size}];",
              "static int8_t te_in[4];",
              'const te_io_t te_inputs[TE_NUM_INPUTS] = {{te_in, 4u, "x", 0}};',
              f'const te_io_t te_outputs[TE_NUM_OUTPUTS] = {{{{te_tables, {4 * size}u, "t", 3}}}};',
              "void te_invoke(void)", "{",
              f"    for (int i = 0; i < {size}; ++i) te_tables[i] = 0x5A5A5A5A;"]
    at = 0
    for i, (packed, n, group, table) in enumerate(cases):
        lines.append(f"    te_unpack_channels(pk{i}, {n}, {group}, te_tables + {at});")
        at += table.size
    lines.append("}")
    (out / "model.c").write_text("\n".join(lines) + "\n")

    result = runner.run(out, [], [((size,), np.int32)])
    got = result.outputs[0][0]
    assert (got[words:] == 0x5A5A5A5A).all(), "te_unpack_channels wrote past the last table"
    at = 0
    for packed, n, group, table in cases:
        assert np.array_equal(got[at:at + table.size], table), (board, n, group, packed[2])
        at += table.size
