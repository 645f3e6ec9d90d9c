"""End to end on the real models: bit-exact with TensorFlow Lite Micro.

The NumPy reference, the host build and the QEMU build of each shared int8 model are
compared with the `tflite-micro` package on seeded random inputs: the builds on 300 of them
(a multiplier one ulp off shows on ~1 input in 150 of ad01: see tests/test_multipliers.py),
all in one firmware run, against one TensorFlow Lite Micro golden per model.
"""
import json

import numpy as np
import pytest

from tests.test_firmware import libc_memory_functions
from tinyengine import reference
from tinyengine import random_records
from tinyengine.cli import main
from tinyengine.compiler import load_model, run_passes
from tinyengine.golden import run_tflm_many
from tinyengine.hostio import host_io_of

MODELS = [
    "mlperf_tiny/vww_96_int8.tflite",
    "mlperf_tiny/kws_ref_model.tflite",
    "mlperf_tiny/pretrainedResnet_quant.tflite",
    "mlperf_tiny/ad01_int8.tflite",
    "mcunet/mcunet-vww1.tflite",
]
N_INPUTS = 300
SEED = 7
_GOLDEN: dict = {}


def golden_records(path):
    """N_INPUTS seeded random records of the model and TensorFlow Lite Micro's outputs on them
    (computed once per model for all the boards)."""
    key = str(path)
    if key not in _GOLDEN:
        records = random_records(run_passes(load_model(path)), N_INPUTS, seed=SEED)
        _GOLDEN[key] = records, run_tflm_many(path, records)
    return _GOLDEN[key]


def run_cli_on_records(path, board, records, tmp_path) -> list:
    """`tinyengine run` over the records (one firmware run); the outputs, one list per record."""
    files = []
    for j in range(len(records[0])):
        f = tmp_path / f"input{j}.npy"
        np.save(f, np.stack([r[j] for r in records]))
        files += ["--input", str(f)]
    rc = main(["run", str(path), "--board", board, "-o", str(tmp_path / "proj"),
               "--output", str(tmp_path / "out.npy"), *files])
    assert rc == 0
    n_out = len(run_passes(load_model(path)).outputs)
    outs = [np.load(tmp_path / "out.npy")] if n_out == 1 else \
        [np.load(tmp_path / f"out.{i}.npy") for i in range(n_out)]
    return [[o[k] for o in outs] for k in range(len(records))]


def assert_equal_to_golden(outputs, golden, what: str) -> None:
    bad = [k for k, (ys, gs) in enumerate(zip(outputs, golden))
           if any(not np.array_equal(y, np.asarray(g).reshape(y.shape)) for y, g in zip(ys, gs))]
    assert not bad, f"{what}: {len(bad)} of {len(golden)} inputs differ from TFLite Micro " \
                    f"(first: {bad[:5]})"


@pytest.mark.parametrize("model", MODELS)
def test_reference_executor_is_bit_exact(model, models_dir):
    path = models_dir / model
    graph = run_passes(load_model(path))
    records = random_records(graph, 2, seed=7)
    golden = run_tflm_many(path, records)
    hio = host_io_of(graph)
    for rec, gold in zip(records, golden):
        for y, g in zip(hio.from_device(reference.run(graph, hio.to_device(rec))), gold):
            np.testing.assert_array_equal(y, np.asarray(g).reshape(y.shape))


@pytest.mark.parametrize("model", MODELS)
def test_host_build_is_bit_exact(model, models_dir, tmp_path, capsys):
    records, golden = golden_records(models_dir / model)
    outputs = run_cli_on_records(models_dir / model, "host", records, tmp_path)
    assert_equal_to_golden(outputs, golden, f"{model} on host")


@pytest.mark.qemu
@pytest.mark.parametrize("model", MODELS)
def test_stm32f746_firmware_on_qemu_is_bit_exact(model, models_dir, tmp_path, capsys):
    records, golden = golden_records(models_dir / model)
    outputs = run_cli_on_records(models_dir / model, "stm32f746", records, tmp_path)
    assert_equal_to_golden(outputs, golden, f"{model} on stm32f746")
    assert json.loads((tmp_path / "proj" / "report.json").read_text())["instructions"] > 0
    assert libc_memory_functions(tmp_path / "proj" / "model.elf") == set()   # no libc memcpy / memset


@pytest.mark.parametrize("board", ["host", pytest.param("stm32f746", marks=pytest.mark.qemu)])
def test_verify_ad01_on_300_inputs(board, models_dir, tmp_path, capsys):
    """ad01's last FULLY_CONNECTED: its multiplier was one ulp off (a float32 scale product),
    which 2 of these 300 inputs show; `verify` must call them bit-exact."""
    rc = main(["verify", str(models_dir / "mlperf_tiny/ad01_int8.tflite"), "--board", board,
               "-n", "300", "--seed", "7", "-o", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "bit-exact" in out and "300 random inputs" in out


@pytest.mark.qemu
def test_cortex_m4_board_is_bit_exact(models_dir, tmp_path, capsys):
    rc = main(["verify", str(models_dir / "mlperf_tiny/kws_ref_model.tflite"), "--board", "stm32f411",
               "-n", "2", "-o", str(tmp_path)])
    assert rc == 0, capsys.readouterr().out
    assert libc_memory_functions(tmp_path / "model.elf") == set()
