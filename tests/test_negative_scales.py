"""Negative and tiny per-channel weight scales, on the shared models (issue 12, item 2).

Quantizers other than TensorFlow's write negative per-channel weight scales (and scales near
1e-10).  tests/model_mutator.py makes such models out of the shared ones: a quarter of each
layer's output channels with scale, weights and bias negated (the real-valued model and
TensorFlow Lite Micro's outputs unchanged), or tiny scales.  Each is verified against TFLM
on the host and on both emulated CPUs, and the negated model must run as fast as the
original (the compiler moves each sign into its channel's weights and bias).
"""
import re

import numpy as np
import pytest

from tests.model_mutator import negate_channels, tiny_channels, weight_scales
from tests.test_kernels_depthwise import _dw_network
from tinyengine import random_records
from tinyengine.cli import main
from tinyengine.compiler import CompileOptions, compile_model, load_model, run_passes
from tinyengine.golden import run_tflm_many

KWS = "mlperf_tiny/kws_ref_model.tflite"
VWW = "mlperf_tiny/vww_96_int8.tflite"


def _mutated(models_dir, model, tmp_path, mutate, tag):
    path = tmp_path / f"{tag}.tflite"
    path.write_bytes(mutate((models_dir / model).read_bytes()))
    return path


def _verify(path, board, tmp_path, capsys, n=3) -> str:
    rc = main(["verify", str(path), "--board", board, "-n", str(n), "--seed", "12",
               "-o", str(tmp_path / f"out_{board}")])
    out = capsys.readouterr().out
    assert rc == 0 and "bit-exact" in out, out
    return out


def _instructions(out: str) -> int:
    return int(re.search(r"([\d,]+) instructions", out).group(1).replace(",", ""))


@pytest.mark.parametrize("model", [KWS, VWW])
def test_negating_channels_keeps_the_model(model, models_dir):
    """The mutation's premise: TFLM gives the same outputs for the negated model."""
    data = (models_dir / model).read_bytes()
    neg = negate_channels(data)
    scales = [s for _, s in weight_scales(neg) if s.size > 1]
    assert all((s < 0).sum() == max(1, round(s.size / 4)) for s in scales)
    graph = run_passes(load_model(models_dir / model))
    records = random_records(graph, 4, seed=5)
    for a, b in zip(run_tflm_many(data, records), run_tflm_many(neg, records)):
        assert all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("board", ["host", pytest.param("stm32f746", marks=pytest.mark.qemu),
                                   pytest.param("stm32f411", marks=pytest.mark.qemu)])
@pytest.mark.parametrize("model", [KWS, VWW])
def test_negated_model_is_bit_exact(model, board, models_dir, tmp_path, capsys):
    path = _mutated(models_dir, model, tmp_path, negate_channels, "neg")
    _verify(path, board, tmp_path, capsys)


def _same_speed(model, models_dir, tmp_path, capsys):
    """Bit-exact on the Cortex-M7 with the original's instruction count (within 1%), and the
    same kernel for every node."""
    counts, kernels = [], []
    for tag, mutate in (("orig", lambda d: d), ("neg", negate_channels)):
        path = _mutated(models_dir, model, tmp_path, mutate, tag)
        counts.append(_instructions(_verify(path, "stm32f746", tmp_path / tag, capsys, n=2)))
        c = compile_model(path, CompileOptions(board="stm32f746"))
        kernels.append([n.params.get("kernel", n.op) for n in c.graph.nodes])
    assert kernels[0] == kernels[1]
    assert abs(counts[1] - counts[0]) <= 0.01 * counts[0], counts


@pytest.mark.qemu
def test_negated_model_is_as_fast(models_dir, tmp_path, capsys):
    _same_speed(KWS, models_dir, tmp_path, capsys)


@pytest.mark.qemu
@pytest.mark.slow
def test_negated_mcunet_is_as_fast(models_dir, tmp_path, capsys):
    """The issue's case: negated mcunet-vww1 took 79.6 M instructions instead of 23.3 M."""
    _same_speed("mcunet/mcunet-vww1.tflite", models_dir, tmp_path, capsys)


@pytest.mark.parametrize("board", ["host", pytest.param("stm32f746", marks=pytest.mark.qemu)])
@pytest.mark.parametrize("zero_weights", [False, True])
def test_tiny_scales_are_bit_exact(zero_weights, board, models_dir, tmp_path, capsys):
    """Scales near 1e-10 (multiplier below 2^-31: TFLite's 0 and shift 0), with negated
    channels too, and with or without their weights."""
    mutate = lambda d: tiny_channels(negate_channels(d), zero_weights=zero_weights)
    path = _mutated(models_dir, KWS, tmp_path, mutate, "tiny")
    assert any((np.abs(s) < 1e-9).any() for _, s in weight_scales(path.read_bytes()))
    _verify(path, board, tmp_path, capsys)


@pytest.mark.parametrize("board", ["host", pytest.param("stm32f746", marks=pytest.mark.qemu),
                                   pytest.param("stm32f411", marks=pytest.mark.qemu)])
def test_negative_depthwise_channels(board, tmp_path, capsys):
    """Depthwise layers with negative channels: folded ones keep the DSP kernel; a layer
    with a negative channel holding a -128 weight takes the portable one."""
    base = _dw_network()

    def dsp_layers(data: bytes) -> int:
        path = tmp_path / "kinds.tflite"
        path.write_bytes(data)
        c = compile_model(path, CompileOptions(board="stm32f746"))
        return sum(n.params["kernel"].endswith("_dsp") for n in c.graph.nodes)

    for tag, data in (("neg", negate_channels(base, seed=3)),
                      ("neg128", tiny_channels(negate_channels(base, seed=4, min_weight_every=2)))):
        path = tmp_path / f"{tag}.tflite"
        path.write_bytes(data)
        _verify(path, board, tmp_path / tag, capsys, n=2)
        if board == "host":
            assert (dsp_layers(data) == dsp_layers(base)) == (tag == "neg")


def test_negative_per_tensor_fully_connected_is_refused(models_dir, tmp_path, capsys):
    """TFLite Micro refuses a negative per-tensor FULLY_CONNECTED scale; so does the compiler,
    with a clear error."""
    path = _mutated(models_dir, "mlperf_tiny/ad01_int8.tflite", tmp_path,
                    lambda d: negate_channels(d, per_tensor=True), "pt")
    rc = main(["compile", str(path), "--board", "host", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "FULLY_CONNECTED" in err and "negative per-tensor weight scale" in err
    assert len(err.strip().splitlines()) == 1


def test_verify_prints_the_largest_float_difference(tmp_path, capsys, monkeypatch):
    """A float output that differs from TFLM's: `verify` names the real largest difference
    (it used to say 0 for every float output)."""
    import tinyengine
    from tests.tflite_builder import ModelBuilder

    mb = ModelBuilder("float io")
    x = mb.tensor("x", (1, 8), "float32")
    q = mb.tensor("q", (1, 8), "int8", scale=0.05, zero_point=3)
    y = mb.tensor("y", (1, 8), "float32")
    mb.op("QUANTIZE", [x], [q])
    mb.op("DEQUANTIZE", [q], [y])
    mb.inputs([x])
    mb.outputs([y])
    path = tmp_path / "f.tflite"
    path.write_bytes(mb.build())
    real = tinyengine.run_tflm_many

    def off_by(model, records):
        return [[np.asarray(g) + np.float32(0.375) for g in rec] for rec in real(model, records)]

    monkeypatch.setattr(tinyengine, "run_tflm_many", off_by)   # the API call the CLI makes
    rc = main(["verify", str(path), "--board", "host", "-n", "2", "-o", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert rc == 1 and "largest difference 0.375)" in out, out
