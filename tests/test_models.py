"""End to end on the real models: bit-exact with TensorFlow Lite Micro.

The NumPy reference, the host build and the QEMU build of each shared int8 model are
compared with the `tflite-micro` package on seeded random inputs.
"""
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
    rc = main(["verify", str(models_dir / model), "--board", "host", "-n", "3", "-o", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "bit-exact" in out


@pytest.mark.qemu
@pytest.mark.parametrize("model", MODELS)
def test_stm32f746_firmware_on_qemu_is_bit_exact(model, models_dir, tmp_path, capsys):
    rc = main(["verify", str(models_dir / model), "--board", "stm32f746", "-n", "3", "-o", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "bit-exact" in out and "instructions" in out
    assert libc_memory_functions(tmp_path / "model.elf") == set()   # no libc memcpy / memset


@pytest.mark.qemu
def test_cortex_m4_board_is_bit_exact(models_dir, tmp_path, capsys):
    rc = main(["verify", str(models_dir / "mlperf_tiny/kws_ref_model.tflite"), "--board", "stm32f411",
               "-n", "2", "-o", str(tmp_path)])
    assert rc == 0, capsys.readouterr().out
    assert libc_memory_functions(tmp_path / "model.elf") == set()
