"""Float ops at a model's edges (issue 12 item 4) against TensorFlow Lite Micro.

An int8 network ending in DEQUANTIZE -> LOG_SOFTMAX / SOFTMAX / LOGISTIC / TANH (float), as a
published MNIST LeNet does, and one starting with a float normalization (SUB, MUL by constants)
before its QUANTIZE: run with the host-side adapters (default) and in float C on the device
(--device-float-io), on the host and on QEMU.  Float outputs must agree with TFLite Micro
within the stated tolerance (ops/float_edge.py: FLOAT_RTOL x |value| + FLOAT_ATOL); the int8
part stays bit-exact.
"""
import contextlib
import io

import numpy as np
import pytest

from tests.tflite_builder import ModelBuilder
import tinyengine
from tinyengine import cli, golden
from tinyengine.compiler import CompileOptions, compile_model, write_project
from tinyengine.ops import float_edge


def edge_model(tail="LOG_SOFTMAX", head=False, tail_add=False) -> bytes:
    """float image -> [SUB mean, MUL 1/std] -> QUANTIZE -> FC (RELU) -> FC -> DEQUANTIZE
    -> [ADD bias, RESHAPE] -> tail op (float), per-tensor int8 weights."""
    rng = np.random.default_rng(7)
    mb = ModelBuilder()
    x = cur = mb.tensor("image", (1, 16), "float32")
    if head:
        mean = mb.const("mean", rng.uniform(0.3, 0.7, (1, 16)).astype(np.float32), "float32")
        centered = mb.tensor("centered", (1, 16), "float32")
        mb.op("SUB", [cur, mean], [centered])
        inv_std = mb.const("inv_std", np.float32([3.7]), "float32")     # broadcast constant
        cur = mb.tensor("scaled", (1, 16), "float32")
        mb.op("MUL", [centered, inv_std], [cur])
    xq = mb.tensor("image_q", (1, 16), "int8", scale=0.02, zero_point=-5)
    mb.op("QUANTIZE", [cur], [xq])
    w1 = mb.const("w1", rng.integers(-127, 128, (12, 16)), "int8", scale=0.01, zero_point=0)
    b1 = mb.const("b1", rng.integers(-500, 500, 12), "int32", scale=0.0002, zero_point=0)
    h = mb.tensor("h", (1, 12), "int8", scale=0.05, zero_point=-128)
    mb.op("FULLY_CONNECTED", [xq, w1, b1], [h], fused_activation_function="RELU")
    w2 = mb.const("w2", rng.integers(-127, 128, (10, 12)), "int8", scale=0.013, zero_point=0)
    logits_q = mb.tensor("logits_q", (1, 10), "int8", scale=0.09, zero_point=3)
    mb.op("FULLY_CONNECTED", [h, w2, -1], [logits_q])
    cur = mb.tensor("logits", (1, 10), "float32")
    mb.op("DEQUANTIZE", [logits_q], [cur])
    if tail_add:
        bias = mb.const("class_bias", rng.uniform(-1, 1, (10,)).astype(np.float32), "float32")
        biased = mb.tensor("biased", (1, 10), "float32")
        mb.op("ADD", [cur, bias], [biased], fused_activation_function="RELU6")
        shape = mb.const("shape", np.array([1, 10], np.int32), "int32")
        cur = mb.tensor("reshaped", (1, 10), "float32")
        mb.op("RESHAPE", [biased, shape], [cur])
    out = mb.tensor("scores", (1, 10), "float32")
    mb.op(tail, [cur], [out], **({"beta": 0.7} if tail == "SOFTMAX" else {}))
    mb.inputs([x])
    mb.outputs([out])
    return mb.build()


CASES = {
    "log_softmax": dict(tail="LOG_SOFTMAX"),
    "softmax": dict(tail="SOFTMAX"),
    "logistic": dict(tail="LOGISTIC"),
    "tanh": dict(tail="TANH"),
    "head_and_tail": dict(tail="LOG_SOFTMAX", head=True, tail_add=True),
}


def _outputs(path, board, device_float_io, out, n=60, seed=3):
    """(ours, TFLM's) float outputs of n seeded random inputs."""
    c = compile_model(path, CompileOptions(board=board, device_float_io=device_float_io))
    write_project(c, out)
    records = tinyengine.random_records(c.graph, n, seed)
    # inputs beyond the QUANTIZE range too: the float ops see values the int8 body clamps
    records = [[r[0] * np.float32(1.5)] for r in records]
    result = tinyengine.build_and_run(c, out, records)
    expected = golden.run_tflm_many(path, records)
    ours = np.stack([o[0] for o in result.outputs])
    gold = np.stack([np.asarray(g[0]).reshape(ours.shape[1:]) for g in expected])
    return c, ours, gold


def _assert_within_tolerance(ours, gold):
    assert ours.dtype == gold.dtype == np.float32
    np.testing.assert_allclose(ours, gold, rtol=float_edge.FLOAT_RTOL, atol=float_edge.FLOAT_ATOL)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("device_float_io", [False, True], ids=["host-adapters", "device-float"])
def test_float_edges_host(tmp_path, case, device_float_io):
    path = tmp_path / f"{case}.tflite"
    path.write_bytes(edge_model(**CASES[case]))
    c, ours, gold = _outputs(path, "host", device_float_io, tmp_path / "out")
    _assert_within_tolerance(ours, gold)
    model_c = (tmp_path / "out" / "model.c").read_text()
    kernel = {"log_softmax": "te_log_softmax_f32", "softmax": "te_softmax_f32",
              "logistic": "te_logistic_f32", "tanh": "te_tanh_f32",
              "head_and_tail": "te_log_softmax_f32"}[case]
    if device_float_io:     # the float ops are in the firmware
        assert f"{kernel}(" in model_c
        if case == "head_and_tail":
            assert model_c.count("te_binary_f32(") == 3
    else:                   # the firmware is int8 only; the host ran QUANTIZE / ... / the tail
        assert "_f32(" not in model_c and "te_quantize" not in model_c
        conv = " ".join(c.report["host_conversions"])
        assert "DEQUANTIZE, then " in conv, conv
        if case == "head_and_tail":
            assert "SUB, then MUL, then QUANTIZE on the host" in conv, conv
            assert "DEQUANTIZE, then ADD, then RESHAPE, then LOG_SOFTMAX on the host" in conv, conv


@pytest.mark.qemu
@pytest.mark.parametrize("board, case", [("stm32f746", c) for c in CASES]
                         + [("stm32f411", "head_and_tail")])
@pytest.mark.parametrize("device_float_io", [False, True], ids=["host-adapters", "device-float"])
def test_float_edges_qemu(tmp_path, board, case, device_float_io):
    """newlib's expf / logf / tanhf on the emulated Cortex-M FPU: within the tolerance."""
    path = tmp_path / f"{case}.tflite"
    path.write_bytes(edge_model(**CASES[case]))
    _, ours, gold = _outputs(path, board, device_float_io, tmp_path / "out", n=40)
    _assert_within_tolerance(ours, gold)


def _verify(*argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = cli.main(["verify", *map(str, argv)])
    return rc, out.getvalue()


def test_verify_reports_the_float_difference(tmp_path, monkeypatch):
    """verify compares float outputs within the tolerance, says so, and fails (printing the real
    largest difference) when a float op is off by more."""
    path = tmp_path / "lenet.tflite"
    path.write_bytes(edge_model("LOG_SOFTMAX"))
    rc, text = _verify(path, "--board", "host", "-n", 20, "-o", tmp_path / "a")
    assert rc == 0, text
    assert "float outputs of LOG_SOFTMAX within 1e-05 x |value| + 1e-06, largest difference" in text

    real = float_edge.LogSoftmaxF32.reference

    def off_by(self, node, graph, inputs):
        return [y + np.float32(0.002) for y in real(self, node, graph, inputs)]

    monkeypatch.setattr(float_edge.LogSoftmaxF32, "reference", off_by)
    rc, text = _verify(path, "--board", "host", "-n", 20, "-o", tmp_path / "b")
    assert rc == 1, text
    assert "FAIL" in text and "20 output(s) of 20 inputs differ" in text
    worst = float(text.split("largest difference ")[1].split(";")[0])
    assert 0.0019 < worst < 0.0021, text


def test_float_op_between_int8_layers_is_refused(tmp_path):
    """DEQUANTIZE -> LOGISTIC (float) -> QUANTIZE -> FC: float between int8 layers, refused."""
    rng = np.random.default_rng(0)
    mb = ModelBuilder()
    x = mb.tensor("x", (1, 8), "int8", scale=0.05, zero_point=0)
    xf = mb.tensor("xf", (1, 8), "float32")
    mb.op("DEQUANTIZE", [x], [xf])
    s = mb.tensor("s", (1, 8), "float32")
    mb.op("LOGISTIC", [xf], [s])
    q = mb.tensor("q", (1, 8), "int8", scale=1 / 256, zero_point=-128)
    mb.op("QUANTIZE", [s], [q])
    w = mb.const("w", rng.integers(-127, 128, (4, 8)), "int8", scale=0.01, zero_point=0)
    y = mb.tensor("y", (1, 4), "int8", scale=0.05, zero_point=0)
    mb.op("FULLY_CONNECTED", [q, w, -1], [y])
    mb.inputs([x])
    mb.outputs([y])
    path = tmp_path / "middle.tflite"
    path.write_bytes(mb.build())
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = cli.main(["compile", str(path), "-o", str(tmp_path / "o"), "--no-build"])
    assert rc == 2
    line = err.getvalue().strip()
    assert "\n" not in line and "middle.tflite" in line and "quantize_2" in line
    assert "only at the model's edges" in line
