"""Bad input gets a one-line error naming the problem and a non-zero exit, never a traceback."""
import json
import subprocess
import sys

import numpy as np
import pytest

from tests.tflite_builder import ModelBuilder


def tinyengine(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tinyengine.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)


def assert_one_line_error(proc, *needles):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_corrupt_file(tmp_path):
    bad = tmp_path / "corrupt.tflite"
    bad.write_bytes(np.random.default_rng(1).integers(0, 255, 5000, dtype=np.uint8).tobytes())
    assert_one_line_error(tinyengine("compile", bad, "--board", "stm32f746", "-o", tmp_path / "o"),
                          "corrupt.tflite", "not a TFLite model")


def test_truncated_real_model(tmp_path, models_dir):
    data = (models_dir / "mlperf_tiny" / "vww_96_int8.tflite").read_bytes()
    bad = tmp_path / "truncated.tflite"
    bad.write_bytes(data[: len(data) // 3])
    assert_one_line_error(tinyengine("compile", bad, "--board", "stm32f746", "-o", tmp_path / "o"),
                          "truncated.tflite")


def test_missing_file(tmp_path):
    assert_one_line_error(tinyengine("compile", tmp_path / "nope.tflite", "-o", tmp_path / "o"),
                          "nope.tflite", "cannot read")


def test_float_only_model(tmp_path, models_dir):
    proc = tinyengine("compile", models_dir / "mlperf_tiny" / "vww_96_float.tflite", "-o", tmp_path / "o")
    assert_one_line_error(proc, "vww_96_float.tflite", "float32", "int8")


def test_unknown_op(tmp_path):
    mb = ModelBuilder()
    x = mb.tensor("x", (1, 4), "int8", scale=0.1, zero_point=0)
    y = mb.tensor("y", (1, 4), "int8", scale=1 / 128, zero_point=0)
    mb.op("TANH", [x], [y])
    mb.inputs([x])
    mb.outputs([y])
    path = tmp_path / "tanh.tflite"
    path.write_bytes(mb.build())
    proc = tinyengine("compile", path, "-o", tmp_path / "o")
    assert_one_line_error(proc, "tanh.tflite", "TANH", "tanh_0", "CONV_2D", "FULLY_CONNECTED")


def test_model_too_large_for_the_board(tmp_path):
    # a 1x1 conv to 96x96x64: 589,824 bytes of output activations > stm32f746's 320 KB
    mb = ModelBuilder()
    x = mb.tensor("x", (1, 96, 96, 8), "int8", scale=0.1, zero_point=0)
    w = mb.const("w", np.ones((64, 1, 1, 8)), "int8", scale=np.full(64, 0.01),
                 zero_point=np.zeros(64), quantized_dimension=0)
    y = mb.tensor("y", (1, 96, 96, 64), "int8", scale=0.1, zero_point=0)
    mb.op("CONV_2D", [x, w, -1], [y], padding="VALID", stride_w=1, stride_h=1)
    mb.inputs([x])
    mb.outputs([y])
    path = tmp_path / "big.tflite"
    path.write_bytes(mb.build())
    proc = tinyengine("compile", path, "--board", "stm32f746", "-o", tmp_path / "o")
    assert_one_line_error(proc, "big.tflite", "stm32f746", "327680")
    needed = int(proc.stderr.split("needs ")[1].split()[0])
    assert needed >= 96 * 96 * 64    # the output alone (the 1x1 conv's input may lie inside it)


def test_unknown_board(tmp_path, models_dir):
    proc = tinyengine("compile", models_dir / "mlperf_tiny" / "ad01_int8.tflite", "--board", "esp32",
                      "-o", tmp_path / "o")
    assert_one_line_error(proc, "esp32", "stm32f746")


@pytest.mark.parametrize("args", [["run"], ["verify"], ["compile"]])
def test_usage_errors_are_not_tracebacks(args):
    proc = tinyengine(*args)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr


def _large_first_layers_model() -> bytes:
    """144x144 input whose first layers are large and whose tail is small: patch-friendly."""
    rng = np.random.default_rng(3)
    mb = ModelBuilder()
    x = mb.tensor("x", (1, 144, 144, 3), "int8", scale=0.02, zero_point=-128)
    prev, c_prev, hw = x, 3, 144
    for i, (c, stride) in enumerate([(16, 2), (32, 1), (32, 2), (32, 2), (64, 2)]):
        w = mb.const(f"w{i}", rng.integers(-127, 128, (c, 3, 3, c_prev)), "int8",
                     scale=np.full(c, 0.004), zero_point=np.zeros(c), quantized_dimension=0)
        hw = (hw + stride - 1) // stride
        y = mb.tensor(f"y{i}", (1, hw, hw, c), "int8", scale=0.05, zero_point=-128)
        mb.op("CONV_2D", [prev, w, -1], [y], padding="SAME", stride_w=stride, stride_h=stride,
              fused_activation_function="RELU")
        prev, c_prev = y, c
    mb.inputs([x])
    mb.outputs([prev])
    return mb.build()


def test_too_large_model_error_says_what_patches_would_need(tmp_path):
    path = tmp_path / "wide.tflite"
    path.write_bytes(_large_first_layers_model())
    proc = tinyengine("compile", path, "--board", "stm32f411", "-o", tmp_path / "o", "--no-build")
    assert_one_line_error(proc, "wide.tflite", "stm32f411", "131072", "--patch auto")
    patched = int(proc.stderr.split("--patch auto it needs ")[1].split()[0])
    assert "(fits)" in proc.stderr and patched <= 131072
    ok = tinyengine("compile", path, "--board", "stm32f411", "-o", tmp_path / "p", "--no-build",
                    "--patch", "auto")
    assert ok.returncode == 0, ok.stderr
    # the figure is what --patch auto really gives (arena + the board's stack reservation)
    report = json.loads((tmp_path / "p" / "report.json").read_text())
    assert patched == report["arena_bytes"] + report["stack_reserved_bytes"], report


@pytest.mark.qemu
def test_patched_model_that_only_fits_with_patches_is_bit_exact_on_cortex_m4(tmp_path):
    path = tmp_path / "wide.tflite"
    path.write_bytes(_large_first_layers_model())
    proc = tinyengine("verify", path, "--board", "stm32f411", "--patch", "auto", "-n", "2",
                      "-o", tmp_path / "v")
    assert proc.returncode == 0 and "bit-exact" in proc.stdout, proc.stdout + proc.stderr

def test_closed_pipe_is_not_an_internal_error():
    """`tinyengine ... | head`: the reader closes the pipe; exit 141 (SIGPIPE's), nothing on stderr."""
    code = ("import sys, tinyengine as te\n"
            "def call():\n"
            "    for _ in range(100000):\n"
            "        print('x' * 100)\n"
            "    return 0\n"
            "sys.exit(te.run_command('prog', call))\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.read(10)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 141
    assert err == ""
