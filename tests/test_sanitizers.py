"""The host project of every shared int8 model, built with AddressSanitizer and
UndefinedBehaviorSanitizer, runs without a report and still equals TFLite Micro.

The generated Makefile takes the sanitizer flags through CPUFLAGS on the make command line
(used to compile and to link on the host); the default build is unchanged.  With
-fno-sanitize-recover=all any report stops the program with a non-zero exit, which the
runner turns into a RunError.
"""
import subprocess

import numpy as np
import pytest

import tinyengine
from tinyengine import golden, runner
from tinyengine.compiler import CompileOptions, compile_model, write_project
from tinyengine.hostio import host_io_of

SANITIZE = "-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"

SHARED_INT8 = ["mlperf_tiny/ad01_int8.tflite", "mlperf_tiny/kws_ref_model.tflite",
               "mlperf_tiny/pretrainedResnet_quant.tflite", "mlperf_tiny/vww_96_int8.tflite",
               "mcunet/mcunet-vww1.tflite"]
CASES = [(m, None) for m in SHARED_INT8] + [("mcunet/mcunet-vww1.tflite", "auto")]


@pytest.mark.parametrize("model, patch", CASES, ids=[f"{m.split('/')[1][:-7]}{'-patch' if p else ''}"
                                                     for m, p in CASES])
def test_host_build_under_sanitizers(tmp_path, models_dir, model, patch):
    path = models_dir / model
    c = compile_model(path, CompileOptions(board="host", patch=patch))
    out = tmp_path / "project"
    write_project(c, out)
    p = subprocess.run(["make", "-j2", f"CPUFLAGS={SANITIZE}"], cwd=out, capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    symbols = subprocess.run(["nm", str(out / "model")], capture_output=True, text=True).stdout
    assert "__asan_" in symbols and "__ubsan_" in symbols      # really instrumented

    records = tinyengine.random_records(c.graph, 4, seed=12)
    hio = host_io_of(c.graph)
    result = runner.run(out, [hio.to_device(r) for r in records], tinyengine.output_specs(c.graph))
    assert "runtime error" not in result.stdout and "Sanitizer" not in result.stdout
    expected = golden.run_tflm_many(path, records)
    for k, (ours, gold) in enumerate(zip(result.outputs, expected)):
        for y, g in zip(hio.from_device(ours), gold):
            np.testing.assert_array_equal(y, np.asarray(g).reshape(y.shape), err_msg=f"input {k}")
