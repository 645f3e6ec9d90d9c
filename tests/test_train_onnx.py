"""tinytrain from ONNX models: a small PyTorch CNN exported by torch.onnx, as a float file
(quantized by tinyengine from calibration data) and as a QDQ file (onnxruntime's
quantize_static), with three kinds of classifier head: Gemm + Softmax after global pooling and
Flatten, a 1x1 Conv after global pooling, and a 1x1 Conv over the whole map pooled after it
(SqueezeNet's); the first also through torch's dynamo exporter (ReduceMean + Reshape, which
quantize_static leaves in float between a DequantizeLinear and a QuantizeLinear).  The training graph's gradients equal torch.autograd's of tinytrain.torch_sim
(the golden, as tests/test_train_graph.py does for TFLite), its forward is bit-exact with the
inference compile of the same file, and `tinytrain plan` reads both kinds of file."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import tinyengine as te
from tinytrain import graph as tgm
from tinytrain import memory
from tinytrain import scheme as sc

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from tinytrain import torch_sim as ts  # noqa: E402

CLASSES = 4
HEADS = ("gemm", "conv", "squeeze", "gemm_dynamo")   # the last: torch's dynamo exporter
KINDS = ("qdq", "float")
SHAPE = (1, 3, 11, 11)          # odd: the stride-2 conv's SAME-like padding is uneven


class Net(torch.nn.Module):
    """conv 3x3/2 + BatchNorm + ReLU6 -> depthwise 3x3 (multiplier 2) + ReLU -> 1x1 conv ->
    residual Add -> the head (module docstring)."""

    def __init__(self, head: str):
        super().__init__()
        self.head = head
        self.c1 = torch.nn.Conv2d(3, 8, 3, 2, 1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.dw = torch.nn.Conv2d(8, 16, 3, 1, 1, groups=8)
        self.pw = torch.nn.Conv2d(16, 8, 1)
        self.fc = torch.nn.Linear(8, 5) if head == "gemm" else torch.nn.Conv2d(8, 5, 1)
        with torch.no_grad():             # a BatchNorm that does something when folded
            self.bn.running_mean.uniform_(-0.2, 0.2)
            self.bn.running_var.uniform_(0.5, 1.5)
            self.bn.weight.uniform_(0.8, 1.2)

    def forward(self, x):
        a = torch.nn.functional.relu6(self.bn(self.c1(x)))
        r = self.pw(torch.relu(self.dw(a))) + a
        if self.head == "squeeze":
            return torch.nn.functional.adaptive_avg_pool2d(torch.relu(self.fc(r)), 1).flatten(1)
        g = torch.nn.functional.adaptive_avg_pool2d(r, 1)
        if self.head == "gemm":
            return torch.softmax(self.fc(g.flatten(1)), -1)
        return self.fc(g).flatten(1)


def export(head: str, folder) -> dict:
    """The float file, its QDQ twin and the calibration array of one head."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    torch.manual_seed(HEADS.index(head))
    net = Net(head.removesuffix("_dynamo")).eval()
    dynamo = head.endswith("_dynamo")
    f32, pre, qdq = (folder / f"{head}{s}.onnx" for s in ("", "_pre", "_qdq"))
    with warnings.catch_warnings():      # the legacy exporter is deprecated, still supported
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(SHAPE),), str(f32), dynamo=dynamo,
                          input_names=["x"], output_names=["y"],
                          **({"external_data": False} if dynamo else {}))
    calib = np.random.default_rng(0).standard_normal((40,) + SHAPE).astype(np.float32)
    np.save(folder / "calib.npy", calib[:, 0])

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": c} for c in calib])

        def get_next(self):
            return next(self.it, None)

    quant_pre_process(str(f32), str(pre))            # folds the BatchNorm for quantize_static
    quantize_static(str(pre), str(qdq), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    per_channel=True)
    return {"float": f32, "qdq": qdq, "calib": folder / "calib.npy"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return {h: export(h, tmp_path_factory.mktemp(f"onnx_{h}")) for h in HEADS}


def options(files, head, kind, board="host") -> te.CompileOptions:
    cal = te.Calibration(str(files[head]["calib"])) if kind == "float" else None
    return te.CompileOptions(board=board, calibration=cal)


@pytest.fixture(scope="module")
def forwards(files):
    return {(h, k): tgm.forward_graph(str(files[h][k]), "host", CLASSES, seed=2,
                                      options=options(files, h, k))
            for h in HEADS for k in KINDS}


def test_heads_found_after_onnx_lowering(forwards):
    """Gemm -> FULLY_CONNECTED after Flatten (Softmax, DequantizeLinear dropped); a 1x1 Conv
    on the pooled vector (Flatten dropped); a 1x1 Conv over the map, its pooling kept for the
    new classes: the logits are one vector of CLASSES per sample in every case."""
    for (head, kind), fwd in forwards.items():
        ops = [n.op for n in fwd.nodes]
        logits = fwd.tensors[fwd.outputs[0]]
        assert logits.size == CLASSES and logits.quant.s == tgm.LOGIT_SCALE, (head, kind)
        want = {"gemm": ["MEAN", "RESHAPE", "FULLY_CONNECTED"],
                "conv": ["MEAN", "CONV_2D"], "squeeze": ["CONV_2D", "MEAN"]}[head.split("_")[0]]
        assert ops[-len(want):] == want, (head, kind, ops)
        assert ops[:3] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D"], ops
        new_head = next(n for n in fwd.nodes if n.name == tgm.HEAD)
        assert fwd.tensors[new_head.outputs[0]].shape[-1] == CLASSES
        if head == "squeeze":          # the map of logits, pooled by the kept MEAN
            assert fwd.tensors[new_head.outputs[0]].shape == (1, 6, 6, CLASSES)


SCHEMES = {
    "bias-only": sc.Scheme(bias_last=3),
    "sparse": sc.Scheme(bias_last=2, weights=((1, 0.5), (2, 0.75))),
    "full": sc.Scheme(full=True),
}


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("head", HEADS)
def test_gradients_match_torch_autograd(forwards, head, kind, scheme):
    """Every trained parameter's gradient (tinyengine's reference running the training graph)
    equals torch.autograd's through the same int8 forward (tinytrain.torch_sim), within rtol
    1e-4 + 1e-5 of the largest magnitude (float32 sums of at most a few hundred terms)."""
    fwd = forwards[head, kind]
    tg = tgm.build(fwd, SCHEMES[scheme], lr=0.0)
    ops = {n.name: n.op for n in fwd.nodes}
    rng = np.random.default_rng(11)
    x = rng.integers(-128, 128, fwd.tensors[fwd.inputs[0]].shape).astype(np.int8)
    labels = np.array([3], np.int32)
    values = te.run_reference(tg.graph, [x, labels], keep_all=True)
    specs = {n.name: tgm.op_spec(n, fwd) for n in fwd.nodes}
    want = ts.graph_gradients(fwd, values, specs, labels, {p: None for p in tg.params})
    trained = {node for node, _, _ in tg.params.values()}
    assert len(trained) == {"bias-only": 3, "sparse": 3, "full": 4}[scheme], trained
    for p, (node, slot, channels) in tg.params.items():
        exp = want[p]
        if channels is not None:
            exp = np.take(exp, channels, axis=-1 if ops[node] == "DEPTHWISE_CONV_2D" else 0)
        assert np.abs(exp).max() > 0, (p, "a gradient that is all zero tests nothing")
        np.testing.assert_allclose(values[tg.grads[p]], exp, rtol=1e-4,
                                   atol=1e-5 * np.abs(exp).max(),
                                   err_msg=f"{head} {kind} {scheme}: {p} ({node} {slot})")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("head", HEADS)
def test_forward_bit_exact_with_inference_compile(files, forwards, head, kind):
    """The training graph's int8 forward up to the head's input equals, tensor for tensor,
    the reference of te.compile_model on the same file and options (the inference compile,
    itself checked against onnxruntime in tests/test_onnx.py), on seeded inputs."""
    fwd = forwards[head, kind]
    tg = tgm.build(fwd, sc.Scheme(bias_last=2), lr=0.0)
    inference = te.compile_model(str(files[head][kind]), options(files, head, kind)).graph
    head_input = next(n for n in fwd.nodes if n.name == tgm.HEAD).inputs[0]
    shared = [t for t in fwd.tensors if t in inference.tensors and not fwd.tensors[t].is_const]
    assert head_input in shared and len(shared) >= 5, shared
    for record in te.random_records(inference, 3, seed=5):
        x = te.host_io_of(inference).to_device(record)
        got = te.run_reference(tg.graph, list(x) + [np.array([0], np.int32)], keep_all=True)
        exp = te.run_reference(inference, list(x), keep_all=True)
        for t in shared:
            np.testing.assert_array_equal(got[t], exp[t], err_msg=f"{head} {kind}: {t}")


def test_plan_cli_reads_qdq_and_float_onnx(files, capsys):
    """`tinytrain plan` on the QDQ file and on the float file with --calibration (tinyengine's
    option names): the peak SRAM it prints is the default scheme's plan on the board; a float
    file without calibration data, with an unreadable one or none of it used, is one line and
    exit 2."""
    from tinytrain import cli

    for kind in KINDS:
        path = str(files["squeeze"][kind])
        calib = ["--calibration", str(files["squeeze"]["calib"])] if kind == "float" else []
        assert cli.main(["plan", path, "--classes", str(CLASSES), "--board", "stm32f411",
                         *calib]) == 0
        out = capsys.readouterr().out
        fwd = tgm.forward_graph(path, "stm32f411", CLASSES,
                                options=options(files, "squeeze", kind, "stm32f411"))
        p = memory.plan(tgm.build(fwd, memory.default_scheme(fwd, "stm32f411")), "stm32f411")
        assert f"peak SRAM    {p.peak_sram_bytes} bytes" in out, out
        assert "scheme       default: biases of the last" in out
    f32 = str(files["gemm"]["float"])
    for extra, message in (([], "give --calibration"),
                           (["--calibration", str(files["gemm"]["float"].with_suffix(".npy"))],
                            "calibration data not found"),
                           (["--calibration", str(files["gemm"]["calib"]), "--calib-limit", "0"],
                            "the calibration limit (--calib-limit) must be a number of samples "
                            ">= 1, got 0")):
        assert cli.main(["plan", f32, "--classes", "3", *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("tinytrain: error:") and message in err[0], err
