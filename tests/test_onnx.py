"""ONNX input: QDQ int8 files from onnxruntime's quantize_static and float files quantized by
TinyEngine from calibration data.

The golden is onnxruntime running the .onnx file itself; its integer kernels round
differently from TFLite's (which TinyEngine follows), so agreement is measured as top-1
agreement.  Our own executions (NumPy reference, host build, QEMU build) must agree exactly.
The digits network is trained here, briefly and seeded (examples/onnx_digits/digits_net.py).
"""
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from tinyengine import reference
from tinyengine.cli import main
from tinyengine.compiler import CompileOptions, compile_model, load_model, run_passes, write_project
from tinyengine.hostio import host_io_of
from tinyengine.quantizer import Calibration

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "onnx_digits"))
N_EVAL = 100


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    pytest.importorskip("torch")
    import digits_net

    d = tmp_path_factory.mktemp("digits")
    data = digits_net.load_data()
    model = digits_net.train(data, epochs=8)
    f32, qdq = d / "digits.onnx", d / "digits_qdq.onnx"
    digits_net.export_onnx(model, f32, dynamo=False)
    digits_net.quantize_qdq(f32, qdq, data.x_calib)
    np.save(d / "x.npy", data.x_test[:N_EVAL])
    np.save(d / "y.npy", data.y_test[:N_EVAL])
    np.save(d / "calib.npy", data.x_calib)
    float_pred = digits_net.onnxruntime_predict(f32, data.x_test[:N_EVAL])
    return dict(dir=d, model=model, data=data, f32=f32, qdq=qdq, x=d / "x.npy", y=d / "y.npy",
                calib=d / "calib.npy",
                float_acc=100.0 * float(np.mean(float_pred == data.y_test[:N_EVAL])))


def _verify(capsys, args):
    rc = main(["verify"] + [str(a) for a in args])
    out = capsys.readouterr().out
    m = re.search(r"top-1 agreement with onnxruntime: (\d+)/(\d+)", out)
    acc = re.search(r"accuracy: TinyEngine int8 ([\d.]+)%, onnxruntime ([\d.]+)%", out)
    assert m and acc, out
    return rc, out, 100.0 * int(m.group(1)) / int(m.group(2)), float(acc.group(1)), float(acc.group(2))


# -- the digits network, end to end on the emulated board --------------------------------------
@pytest.mark.qemu
def test_qdq_digits_on_qemu_agrees_with_onnxruntime(digits, tmp_path, capsys):
    rc, out, agree, acc_int8, _ = _verify(capsys, [
        digits["qdq"], "--board", "stm32f746", "--input", digits["x"], "--labels", digits["y"],
        "--reference", "-o", tmp_path])
    assert rc == 0, out
    assert agree >= 99.0, out
    assert f"NumPy reference vs firmware: {N_EVAL}/{N_EVAL} bit-exact" in out
    assert "instructions per inference" in out
    assert abs(acc_int8 - digits["float_acc"]) <= 1.0, (out, digits["float_acc"])


@pytest.mark.qemu
def test_float_digits_quantized_by_tinyengine_on_qemu(digits, tmp_path, capsys):
    rc, out, agree, acc_int8, acc_float = _verify(capsys, [
        digits["f32"], "--board", "stm32f746", "--calibration", digits["calib"],
        "--input", digits["x"], "--labels", digits["y"], "-o", tmp_path])
    assert rc == 0, out
    assert agree >= 97.0, out
    assert acc_float == pytest.approx(digits["float_acc"], abs=0.05)
    assert abs(acc_int8 - acc_float) <= 1.0, out


@pytest.mark.qemu
def test_qdq_reference_host_and_qemu_are_bit_exact(digits, tmp_path):
    """Our three executions of one QDQ model agree exactly; `run` takes the model's own NCHW
    float32 input and writes its own float32 output."""
    x = np.load(digits["x"])[:20]
    np.save(tmp_path / "x20.npy", x)
    outs = {}
    for board in ("host", "stm32f746"):
        y = tmp_path / f"{board}.npy"
        rc = main(["run", str(digits["qdq"]), "--board", board, "--input", str(tmp_path / "x20.npy"),
                   "--output", str(y), "-o", str(tmp_path / board)])
        assert rc == 0
        outs[board] = np.load(y)
    graph = run_passes(load_model(digits["qdq"]))
    hio = host_io_of(graph)
    ref = np.stack([hio.from_device(reference.run(graph, hio.to_device([x[i:i + 1]])))[0]
                    for i in range(len(x))])
    assert ref.dtype == np.float32 and ref.shape == (20, 1, 10)
    np.testing.assert_array_equal(outs["host"], ref)
    np.testing.assert_array_equal(outs["stm32f746"], ref)
    # and the model's own answer: close to onnxruntime running the QDQ file
    s = ort.InferenceSession(str(digits["qdq"]), providers=["CPUExecutionProvider"])
    gold = np.stack([s.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])
    assert np.mean(gold.argmax(-1) == ref.argmax(-1)) >= 0.95


@pytest.fixture(scope="module")
def dynamo(digits):
    """The digits network from torch's default (dynamo) exporter, float and QDQ int8: global
    pooling and flatten come out as ReduceMean + Reshape, which quantize_static leaves in float
    between a DequantizeLinear and the next QuantizeLinear."""
    import digits_net

    d, data = digits["dir"], digits["data"]
    f32, qdq = d / "digits_dynamo.onnx", d / "digits_dynamo_qdq.onnx"
    digits_net.export_onnx(digits["model"], f32, dynamo=True)
    digits_net.quantize_qdq(f32, qdq, data.x_calib)
    m = onnx.load(qdq)
    cons = {t: n for n in m.graph.node for t in n.input}
    mean = [n for n in m.graph.node if n.op_type == "ReduceMean"]
    assert len(mean) == 1 and cons[mean[0].output[0]].op_type == "Reshape"     # float in the file
    np.save(d / "x_all.npy", data.x_test)
    np.save(d / "y_all.npy", data.y_test)
    float_pred = digits_net.onnxruntime_predict(f32, data.x_test)
    return dict(f32=f32, qdq=qdq, x=d / "x_all.npy", y=d / "y_all.npy",
                float_acc=100.0 * float(np.mean(float_pred == data.y_test)))


def test_dynamo_export_compiles_and_agrees(digits, dynamo, tmp_path):
    """The default (dynamo) exporter writes different ops (ReduceMean, Reshape) and names."""
    import digits_net

    dyn = dynamo["f32"]
    opts = CompileOptions(board="stm32f746", calibration=Calibration(np.load(digits["calib"])))
    c = compile_model(dyn, opts)
    report = write_project(c, tmp_path / "proj")
    assert report["macs"] > 0 and (tmp_path / "proj" / "report.json").exists()
    hio = host_io_of(c.graph)
    x = np.load(digits["x"])
    ours = [int(np.argmax(hio.from_device(reference.run(c.graph, hio.to_device([x[i:i + 1]])))[0]))
            for i in range(len(x))]
    gold = digits_net.onnxruntime_predict(dyn, x)
    assert np.mean(np.array(ours) == gold) >= 0.97


def _largest_steps(out: str) -> float:
    m = re.search(r"largest difference (\d+) output quantization steps", out)
    assert m, out
    return float(m.group(1))


@pytest.mark.parametrize("board", ["host", pytest.param("stm32f746", marks=pytest.mark.qemu)])
def test_dynamo_qdq_agrees_with_onnxruntime(dynamo, board, tmp_path, capsys):
    """The float ReduceMean + Reshape between a DQ and the next Q are lowered to MEAN + RESHAPE
    with that Q's quantization; 400 held-out digits against onnxruntime on the QDQ file."""
    ir_ops = [n.op for n in run_passes(load_model(dynamo["qdq"])).nodes]
    assert "MEAN" in ir_ops and "RESHAPE" in ir_ops
    rc, out, agree, acc_int8, acc_ort = _verify(capsys, [
        dynamo["qdq"], "--board", board, "--input", dynamo["x"], "--labels", dynamo["y"],
        "--reference", "-o", tmp_path])
    assert rc == 0, out
    assert agree >= 99.0, out
    assert "NumPy reference vs firmware: 400/400 bit-exact" in out
    assert _largest_steps(out) <= 2, out
    assert abs(acc_int8 - dynamo["float_acc"]) <= 1.0 and abs(acc_int8 - acc_ort) <= 1.0, out


def test_calibration_from_an_image_folder(digits, tmp_path):
    from PIL import Image
    import digits_net

    folder = tmp_path / "images"
    folder.mkdir()
    for i, img in enumerate(digits["data"].x_calib[:60]):
        pixels = np.clip((img[0] * 0.5 + 0.5) * 255, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    rc = main(["compile", str(digits["f32"]), "--calibration", str(folder), "--calib-mean", "0.5",
               "--calib-std", "0.5", "-o", str(tmp_path / "proj"), "--no-build"])
    assert rc == 0
    opts = CompileOptions(calibration=Calibration(folder, mean=(0.5,), std=(0.5,)))
    graph = run_passes(load_model(digits["f32"], opts), opts)
    hio = host_io_of(graph)
    x = np.load(digits["x"])
    ours = [int(np.argmax(hio.from_device(reference.run(graph, hio.to_device([x[i:i + 1]])))[0]))
            for i in range(len(x))]
    assert np.mean(np.array(ours) == digits_net.onnxruntime_predict(digits["f32"], x)) >= 0.97


# -- every supported op family, float and QDQ -------------------------------------------------
def ops_model(bn: bool = True, seed: int = 0):
    """Conv (stride 2, explicit pads) + BatchNorm + Relu, MaxPool with pads, Resize nearest,
    Concat, Pad, depthwise Conv + Clip(0, 6), AveragePool, Sigmoid, Mul, Transpose, Flatten of
    an NCHW tensor, Gemm, ReduceMean, MatMul, Add, Softmax; extra opset domains declared."""
    rng = np.random.default_rng(seed)
    net = _Net()
    c, node = net.c, net.node

    def f(*shape, s=0.3):
        return (rng.standard_normal(shape) * s).astype(np.float32)

    node("Conv", ["x", c("w1", f(8, 3, 3, 3)), c("b1", f(8))], ["c1"], kernel_shape=[3, 3],
         strides=[2, 2], pads=[1, 1, 1, 1])
    if bn:
        node("BatchNormalization", ["c1", c("g", 1 + f(8, s=0.1)), c("be", f(8, s=0.1)),
                                    c("m", f(8, s=0.1)), c("v", 1 + np.abs(f(8, s=0.1)))], ["bn1"])
    node("Relu", ["bn1" if bn else "c1"], ["r1"])                                    # 1x8x6x6
    node("MaxPool", ["r1"], ["mp"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    node("Resize", ["mp", "", c("sc", np.array([1, 1, 2, 2], np.float32))], ["up"], mode="nearest",
         coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    node("Concat", ["r1", "up"], ["cat"], axis=1)                                      # 1x16x6x6
    node("Pad", ["cat", c("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))], ["pad"])
    node("Conv", ["pad", c("wd", f(16, 1, 3, 3, s=0.5)), c("bd", f(16))], ["dw"],
         kernel_shape=[3, 3], group=16)
    node("Clip", ["dw", c("lo", np.array(0, np.float32)), c("hi", np.array(6, np.float32))], ["dwr"])
    node("AveragePool", ["dwr"], ["ap"], kernel_shape=[2, 2], strides=[2, 2])         # 1x16x3x3
    node("Sigmoid", ["ap"], ["sg"])
    node("Mul", ["ap", "sg"], ["sw"])
    node("Transpose", ["sw"], ["tr"], perm=[0, 1, 3, 2])
    node("Flatten", ["tr"], ["fl"], axis=1)                                            # 1x144
    node("Gemm", ["fl", c("wf", f(10, 144, s=0.1)), c("bf", f(10))], ["g1"], transB=1)
    node("ReduceMean", ["sw", c("axes", np.array([2, 3], np.int64))], ["rm"], keepdims=0)
    node("MatMul", ["rm", c("wm", f(16, 10))], ["mm"])
    node("Add", ["g1", "mm"], ["sum"])
    node("Add", ["sum", c("k", f(10))], ["sum2"])
    node("Softmax", ["sum2"], ["y"], axis=-1)
    return net.model("ops", [1, 3, 12, 12], [1, 10], [("com.microsoft", 1), ("ai.onnx.ml", 3)])


class _Net:
    """A float ONNX graph written node by node: input 'x', output 'y', opset 18."""

    def __init__(self):
        self.inits, self.nodes = [], []

    def c(self, name, arr):
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(self, op, ins, outs, **kw):
        from onnx import helper

        self.nodes.append(helper.make_node(op, ins, outs, name=outs[0] + "_node", **kw))

    def model(self, name, x_shape, y_shape, extra_opsets=()):
        from onnx import TensorProto, helper

        g = helper.make_graph(self.nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]
                              + [helper.make_opsetid(d, v) for d, v in extra_opsets])
        m.ir_version = 9
        onnx.checker.check_model(m)
        return m


def _quantize_static(src, dst, calib: np.ndarray) -> None:
    """onnxruntime's quantize_static: QDQ, int8 activations, int8 per-channel weights; input 'x'."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": sample} for sample in calib])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True)


@pytest.fixture(scope="module")
def ops_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ops")
    x = np.random.default_rng(1).standard_normal((200, 1, 3, 12, 12)).astype(np.float32)
    onnx.save(ops_model(bn=True), d / "ops.onnx")
    onnx.save(ops_model(bn=False), d / "ops_nobn.onnx")
    _quantize_static(d / "ops_nobn.onnx", d / "ops_qdq.onnx", x[:100])
    np.save(d / "calib.npy", x[:100, 0])
    np.save(d / "x.npy", x[100:, 0])
    return d


@pytest.mark.parametrize("name", ["ops.onnx", "ops_qdq.onnx"])
def test_ops_model_reference_agrees_with_onnxruntime(ops_files, name):
    path = ops_files / name
    opts = CompileOptions(calibration=None if "qdq" in name else Calibration(ops_files / "calib.npy"))
    graph = run_passes(load_model(path, opts), opts)
    ir_ops = {n.op for n in graph.nodes}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "RESIZE_NEAREST_NEIGHBOR",
            "CONCATENATION", "LOGISTIC", "MUL", "TRANSPOSE", "FULLY_CONNECTED", "MEAN", "ADD",
            "SOFTMAX"} <= ir_ops
    assert "BatchNormalization" not in ir_ops and "QUANTIZE" not in [graph.nodes[0].op]
    hio = host_io_of(graph)
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.load(ops_files / "x.npy")
    ours = np.stack([hio.from_device(reference.run(graph, hio.to_device([x[i:i + 1]])))[0] for i in range(len(x))])
    gold = np.stack([s.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])
    assert np.mean(ours.argmax(-1) == gold.argmax(-1)) >= 0.95
    assert np.abs(ours - gold).max() < 0.1          # softmax probabilities, 1/256 steps


def test_ops_model_host_build_is_bit_exact_with_reference(ops_files, tmp_path, capsys):
    rc = main(["verify", str(ops_files / "ops_qdq.onnx"), "--board", "host", "--input",
               str(ops_files / "x.npy"), "--reference", "--min-agreement", "95", "-o", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "NumPy reference vs firmware: 100/100 bit-exact" in out


# -- float ops that quantize_static leaves between a DequantizeLinear and the next QuantizeLinear --
def chains_model(seed: int = 0):
    """Conv + Relu, then three ways to a 1x8 vector: ReduceMean + Reshape (as torch's dynamo
    exporter writes global pooling and flatten), GlobalAveragePool + Flatten, ReduceMean over H
    then over W + Squeeze; Concat, Gemm.  quantize_static leaves the ReduceMean chains in float."""
    rng = np.random.default_rng(seed)
    net = _Net()
    c, node = net.c, net.node
    node("Conv", ["x", c("w1", rng.standard_normal((8, 4, 3, 3)).astype(np.float32) * 0.3),
                  c("b1", rng.standard_normal(8).astype(np.float32) * 0.3)], ["c1"],
         kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    node("Relu", ["c1"], ["a"])                                                        # 1x8x6x6
    node("ReduceMean", ["a", c("hw", np.array([2, 3], np.int64))], ["m1"], keepdims=1)
    node("Reshape", ["m1", c("s18", np.array([1, 8], np.int64))], ["r1"])
    node("GlobalAveragePool", ["a"], ["gp"])
    node("Flatten", ["gp"], ["f2"], axis=1)
    node("ReduceMean", ["a", c("h", np.array([2], np.int64))], ["mh"], keepdims=1)
    node("ReduceMean", ["mh", c("w", np.array([-1], np.int64))], ["mw"], keepdims=1)
    node("Squeeze", ["mw", c("sq_axes", np.array([2, 3], np.int64))], ["sq"])
    node("Concat", ["r1", "f2", "sq"], ["cat"], axis=1)                                # 1x24
    node("Gemm", ["cat", c("wf", rng.standard_normal((10, 24)).astype(np.float32)),
                  c("bf", rng.standard_normal(10).astype(np.float32) * 0.3)], ["y"], transB=1)
    return net.model("chains", [1, 4, 6, 6], [1, 10])


@pytest.fixture(scope="module")
def chains_qdq(tmp_path_factory):
    d = tmp_path_factory.mktemp("chains")
    x = np.random.default_rng(2).standard_normal((400, 1, 4, 6, 6)).astype(np.float32)
    onnx.save(chains_model(), d / "chains.onnx")
    _quantize_static(d / "chains.onnx", d / "chains_qdq.onnx", x[:100])
    m = onnx.load(d / "chains_qdq.onnx")
    op_of = {o: n.op_type for n in m.graph.node for o in n.output}
    assert op_of["r1"] == "Reshape" and op_of["m1"] == "ReduceMean"          # float in the file
    assert op_of["sq"] == "Squeeze" and op_of["mw"] == "ReduceMean" and op_of["mh"] == "ReduceMean"
    np.save(d / "x.npy", x[100:, 0])
    return d / "chains_qdq.onnx", d / "x.npy"


@pytest.mark.parametrize("board", ["host", pytest.param("stm32f746", marks=pytest.mark.qemu)])
def test_float_chains_between_dq_and_q_agree_with_onnxruntime(chains_qdq, board, tmp_path, capsys):
    path, x = chains_qdq
    ir_ops = [n.op for n in run_passes(load_model(path)).nodes]
    assert ir_ops.count("MEAN") == 4 and "RESHAPE" in ir_ops
    rc = main(["verify", str(path), "--board", board, "--input", str(x), "--reference",
               "--min-agreement", "95", "-o", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "NumPy reference vs firmware: 300/300 bit-exact" in out
    m = re.search(r"top-1 agreement with onnxruntime: (\d+)/300", out)
    assert m and int(m.group(1)) >= 285, out
    assert _largest_steps(out) <= 2, out


def _qdq_tail_model(path, tail: list, tail_out: str, quantize_output: bool):
    """x -> Q -> DQ -> `tail` (nodes reading 'xd') -> [Q -> DQ ->] y."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.int8), "z"),
             numpy_helper.from_array(np.array([2, 3], np.int64), "hw"),
             numpy_helper.from_array(np.array([1, 4], np.int64), "s14"),
             numpy_helper.from_array(np.array([3], np.int64), "w_axis"),
             numpy_helper.from_array(np.array([1, 12], np.int64), "s112"),
             numpy_helper.from_array(np.ones((4, 4), np.int8), "wq"),
             numpy_helper.from_array(np.full(4, 0.01, np.float32), "ws"),
             numpy_helper.from_array(np.zeros(4, np.int8), "wz")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q_in"),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq_in"),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], name="dq_w", axis=1)]
    nodes += tail
    y = tail_out
    if quantize_output:
        nodes += [helper.make_node("QuantizeLinear", [tail_out, "s", "z"], ["yq"], name="q_out"),
                  helper.make_node("DequantizeLinear", ["yq", "s", "z"], ["y"], name="dq_out")]
        y = "y"
    g = helper.make_graph(nodes, "tail", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 3])],
                          [helper.make_tensor_value_info(y, TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), path)


@pytest.mark.parametrize("case", ["output", "float_consumer", "no_int8_op", "no_int8_lowering"])
def test_float_op_not_int8_in_meaning_is_refused(tmp_path, capsys, case):
    """A float result that no QuantizeLinear re-quantizes, or an op without an int8 lowering,
    stops with one line naming the node and the op."""
    from onnx import helper

    mean = helper.make_node("ReduceMean", ["xd", "hw"], ["m"], name="the_mean", keepdims=1)
    flat = helper.make_node("Reshape", ["m", "s14"], ["r"], name="the_reshape")
    if case == "output":             # DQ -> ReduceMean -> Reshape -> graph output, in float
        tail, out, q, want = [mean, flat], "r", False, ["the_reshape", "Reshape", "float"]
    elif case == "float_consumer":   # DQ -> ReduceMean -> Reshape -> MatMul (reads it in float) -> Q
        mm = helper.make_node("MatMul", ["r", "w"], ["mm"], name="the_matmul")
        tail, out, q, want = [mean, flat, mm], "mm", True, ["the_mean", "ReduceMean", "re-quantizes"]
    elif case == "no_int8_op":       # DQ -> Exp -> ReduceMean -> Reshape -> Q
        exp = helper.make_node("Exp", ["xd"], ["e"], name="the_exp")
        mean.input[0] = "e"
        tail, out, q, want = [exp, mean, flat], "r", True, ["the_exp", "Exp", "not supported"]
    else:                            # a mean over W without keepdims: NCHW [1,4,3] has no NHWC MEAN
        mean = helper.make_node("ReduceMean", ["xd", "w_axis"], ["m"], name="the_mean", keepdims=0)
        flat = helper.make_node("Reshape", ["m", "s112"], ["r"], name="the_reshape")
        tail, out, q, want = [mean, flat], "r", True, ["the_mean", "ReduceMean", "keepdims"]
    path = tmp_path / f"{case}.onnx"
    _qdq_tail_model(path, tail, out, q)
    err = _one_line_error(capsys, ["compile", str(path), "-o", str(tmp_path / "out")])
    assert all(w in err for w in want), err
    # the same chain, re-quantized: compiles
    if case == "float_consumer":
        ok = tmp_path / "ok.onnx"
        _qdq_tail_model(ok, [mean, flat], "r", True)
        assert main(["compile", str(ok), "-o", str(tmp_path / "ok"), "--no-build"]) == 0


# -- errors: one line, non-zero exit ------------------------------------------------------------
def _one_line_error(capsys, argv) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("tinyengine: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_float_model_without_calibration_stops(ops_files, tmp_path, capsys):
    err = _one_line_error(capsys, ["compile", str(ops_files / "ops.onnx"), "-o", str(tmp_path)])
    assert "--calibration" in err and "float model" in err
    assert not (tmp_path / "report.json").exists()


@pytest.mark.parametrize("content", [b"", b"not an onnx model at all \x00\xff\x12", "truncated"])
def test_broken_or_truncated_file(ops_files, tmp_path, capsys, content):
    data = (ops_files / "ops_qdq.onnx").read_bytes()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(data[: len(data) // 2] if content == "truncated" else content)
    err = _one_line_error(capsys, ["compile", str(bad), "-o", str(tmp_path / "out")])
    assert "bad.onnx" in err and ("not a valid ONNX model" in err or "truncated" in err)


def test_unsupported_op_names_op_node_and_supported_list(tmp_path, capsys):
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("LeakyRelu", ["x"], ["y"], name="leaky_1", alpha=0.1)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "leaky.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    err = _one_line_error(capsys, ["compile", str(path), "-o", str(tmp_path / "out")])
    assert "LeakyRelu" in err and "leaky_1" in err and "Conv" in err and "QuantizeLinear" in err


def test_unsupported_clip_range_and_custom_domain(ops_files, tmp_path, capsys):
    from onnx import TensorProto, helper, numpy_helper

    lo, hi = numpy_helper.from_array(np.array(-2, np.float32), "lo"), numpy_helper.from_array(
        np.array(3, np.float32), "hi")
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
                           helper.make_node("Clip", ["m", "lo", "hi"], ["y"], name="clip_7")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [lo, hi, w])
    path = tmp_path / "clip.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    err = _one_line_error(capsys, ["compile", str(path), "-o", str(tmp_path / "out"),
                                   "--calibration", str(ops_files / "calib.npy")])
    assert "clip_7" in err and "Clip range" in err
    g2 = helper.make_graph([helper.make_node("FusedGemm", ["x"], ["y"], name="fg", domain="com.microsoft")],
                           "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                           [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path2 = tmp_path / "custom.onnx"
    onnx.save(helper.make_model(g2, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)]), path2)
    err = _one_line_error(capsys, ["compile", str(path2), "-o", str(tmp_path / "out2")])
    assert "com.microsoft::FusedGemm" in err and "'fg'" in err
