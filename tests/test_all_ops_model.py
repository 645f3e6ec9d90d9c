"""A network that uses every supported TFLite operator, end to end against TFLite Micro.

It stands in for the real models kept back from us: a float-wrapped int8 body with
strided SAME convs, depthwise with a depth multiplier, explicit PAD, a squeeze-excite
block (MEAN, LOGISTIC, broadcast MUL), a residual ADD, resize, concatenation, transpose,
pooling, a classifier head and three outputs (SOFTMAX, LOG_SOFTMAX, DEQUANTIZE).
"""
import numpy as np
import pytest

from tests.test_firmware import libc_memory_functions
from tests.tflite_builder import ModelBuilder
from tinyengine.cli import main


def _w(rng, shape):
    return rng.integers(-127, 128, shape).astype(np.int8)


def build_all_ops_model(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    mb = ModelBuilder("all ops")
    A = dict(scale=0.05, zero_point=-4)           # a shared activation quantization
    x_f = mb.tensor("x_float", (1, 17, 15, 3), "float32")
    x = mb.tensor("x_q", (1, 17, 15, 3), "int8", scale=0.02, zero_point=3)
    mb.op("QUANTIZE", [x_f], [x])

    w1 = mb.const("w1", _w(rng, (8, 3, 3, 3)), "int8", scale=rng.uniform(0.002, 0.01, 8),
                  zero_point=np.zeros(8), quantized_dimension=0)
    b1 = mb.const("b1", rng.integers(-500, 500, 8), "int32", scale=np.full(8, 1e-4), zero_point=np.zeros(8))
    c1 = mb.tensor("c1", (1, 9, 8, 8), "int8", **A)
    mb.op("CONV_2D", [x, w1, b1], [c1], padding="SAME", stride_h=2, stride_w=2,
          fused_activation_function="RELU6")

    wd = mb.const("wd", _w(rng, (1, 5, 3, 16)), "int8", scale=rng.uniform(0.002, 0.01, 16),
                  zero_point=np.zeros(16), quantized_dimension=3)
    bd = mb.const("bd", rng.integers(-300, 300, 16), "int32", scale=np.full(16, 1e-4), zero_point=np.zeros(16))
    d1 = mb.tensor("d1", (1, 9, 8, 16), "int8", **A)
    # (this tflite-micro build crashes on a depthwise conv without bias; optional bias is
    # covered by the op tests)
    mb.op("DEPTHWISE_CONV_2D", [c1, wd, bd], [d1], padding="SAME", stride_h=1, stride_w=1,
          depth_multiplier=2, fused_activation_function="RELU")

    pads = mb.const("pads", np.array([[0, 0], [1, 0], [0, 2], [0, 0]]), "int32")
    p1 = mb.tensor("p1", (1, 10, 10, 16), "int8", **A)
    mb.op("PAD", [d1, pads], [p1])
    m1 = mb.tensor("m1", (1, 5, 5, 16), "int8", **A)
    mb.op("MAX_POOL_2D", [p1], [m1], padding="VALID", stride_h=2, stride_w=2, filter_height=2,
          filter_width=2)

    axes = mb.const("axes", np.array([1, 2]), "int32")
    g = mb.tensor("se_mean", (1, 1, 1, 16), "int8", scale=0.04, zero_point=-10)
    mb.op("MEAN", [m1, axes], [g], keep_dims=True)
    s = mb.tensor("se_gate", (1, 1, 1, 16), "int8", scale=1 / 256, zero_point=-128)
    mb.op("LOGISTIC", [g], [s])
    m2 = mb.tensor("se_out", (1, 5, 5, 16), "int8", scale=0.03, zero_point=-6)
    mb.op("MUL", [m1, s], [m2])
    a1 = mb.tensor("residual", (1, 5, 5, 16), "int8", scale=0.07, zero_point=-2)
    mb.op("ADD", [m2, m1], [a1], fused_activation_function="RELU")

    size = mb.const("size", np.array([7, 9]), "int32")
    r1 = mb.tensor("resized", (1, 7, 9, 16), "int8", scale=0.07, zero_point=-2)
    mb.op("RESIZE_NEAREST_NEIGHBOR", [a1, size], [r1], half_pixel_centers=True)
    cat = mb.tensor("concat", (1, 7, 9, 32), "int8", scale=0.07, zero_point=-2)
    mb.op("CONCATENATION", [r1, r1], [cat], axis=3)
    perm = mb.const("perm", np.array([0, 2, 1, 3]), "int32")
    t1 = mb.tensor("transposed", (1, 9, 7, 32), "int8", scale=0.07, zero_point=-2)
    mb.op("TRANSPOSE", [cat, perm], [t1])
    ap = mb.tensor("avgpool", (1, 3, 3, 32), "int8", scale=0.07, zero_point=-2)
    mb.op("AVERAGE_POOL_2D", [t1], [ap], padding="SAME", stride_h=3, stride_w=3, filter_height=3,
          filter_width=3)
    shape = mb.const("shape", np.array([1, 288]), "int32")
    rs = mb.tensor("flat", (1, 288), "int8", scale=0.07, zero_point=-2)
    mb.op("RESHAPE", [ap, shape], [rs])

    wf = mb.const("wf", _w(rng, (10, 288)), "int8", scale=0.003, zero_point=0)
    bf = mb.const("bf", rng.integers(-2000, 2000, 10), "int32", scale=0.07 * 0.003, zero_point=0)
    logits = mb.tensor("logits", (1, 10), "int8", scale=0.2, zero_point=5)
    mb.op("FULLY_CONNECTED", [rs, wf, bf], [logits])
    probs = mb.tensor("probs", (1, 10), "int8", scale=1 / 256, zero_point=-128)
    mb.op("SOFTMAX", [logits], [probs], beta=1.0)
    logp = mb.tensor("log_probs", (1, 10), "int8", scale=16 / 256, zero_point=127)
    mb.op("LOG_SOFTMAX", [logits], [logp])
    rq = mb.tensor("requant", (1, 10), "int8", scale=0.11, zero_point=-20)
    mb.op("QUANTIZE", [logits], [rq])
    out_f = mb.tensor("logits_float", (1, 10), "float32")
    mb.op("DEQUANTIZE", [rq], [out_f])

    mb.inputs([x_f])
    mb.outputs([probs, logp, out_f])
    return mb.build()


@pytest.fixture(scope="module")
def all_ops_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("allops") / "all_ops.tflite"
    path.write_bytes(build_all_ops_model())
    return path


def test_every_supported_op_is_used():
    from tinyengine.frontends.tflite import load
    from tinyengine.ops import supported_ops

    used = {n.op for n in load(build_all_ops_model()).nodes}
    int8_ops = {o for o in supported_ops() if not o.endswith("_F32")}  # float edge ops:
    assert int8_ops - used <= {"PADV2"}  # tests/test_float_edges.py; PADV2 has its own op tests


@pytest.mark.parametrize("board", ["host", pytest.param("stm32f746", marks=pytest.mark.qemu),
                                   pytest.param("stm32f411", marks=pytest.mark.qemu)])
def test_all_ops_model_is_bit_exact(all_ops_model, board, tmp_path, capsys):
    rc = main(["verify", str(all_ops_model), "--board", board, "-n", "8", "--reference",
               "-o", str(tmp_path / board)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "bit-exact" in out
    if board != "host":   # PAD, CONCATENATION, RESIZE, RESHAPE copy through te_move_s8, not libc
        assert libc_memory_functions(tmp_path / board / "model.elf") == set()
