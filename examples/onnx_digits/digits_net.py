"""A small MobileNetV2-like network for scikit-learn's 8x8 digits, in plain PyTorch.

Used by ``example.py`` (the end-to-end ONNX example) and by ``tests/test_onnx.py``:

    data = load_data()                       # 16x16 NCHW float32, normalized to [-1, 1]
    model = train(data, seconds=...)         # a few seconds on a CPU, seeded
    export_onnx(model, "digits.onnx")        # torch.onnx.export, legacy or dynamo exporter
    quantize_qdq("digits.onnx", "digits_qdq.onnx", data.x_calib)   # onnxruntime QDQ int8

No torchvision: the blocks are written out (inverted residuals with expansion, depthwise
3x3, linear bottleneck, ReLU6, BatchNorm).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIZE = 16          # the 8x8 digits are upsampled 2x (nearest)


@dataclass
class Data:
    x_train: np.ndarray      # N x 1 x 16 x 16 float32
    y_train: np.ndarray
    x_test: np.ndarray       # held out, never seen in training or calibration
    y_test: np.ndarray
    x_calib: np.ndarray      # calibration inputs (a slice of the training set)


def load_data(seed: int = 0, n_test: int = 400, n_calib: int = 200) -> Data:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.float32) / 16.0                       # [0, 1]
    x = np.kron(x, np.ones((SIZE // 8, SIZE // 8), np.float32))  # nearest upsampling to 16x16
    x = ((x - 0.5) / 0.5)[:, None].astype(np.float32)            # NCHW, [-1, 1]
    y = d.target.astype(np.int64)
    p = np.random.default_rng(seed).permutation(len(x))
    test, train = p[:n_test], p[n_test:]
    return Data(x[train], y[train], x[test], y[test], x[train[:n_calib]])


def build_model():
    import torch.nn as nn

    def conv_bn(cin, cout, k=3, stride=1, groups=1, relu=True):
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        if relu:
            layers.append(nn.ReLU6())
        return nn.Sequential(*layers)

    class InvertedResidual(nn.Module):
        def __init__(self, cin, cout, stride, expand):
            super().__init__()
            hidden = cin * expand
            self.residual = stride == 1 and cin == cout
            self.block = nn.Sequential(conv_bn(cin, hidden, 1),                       # expand
                                       conv_bn(hidden, hidden, 3, stride, hidden),   # depthwise
                                       conv_bn(hidden, cout, 1, relu=False))         # project
        def forward(self, x):
            return x + self.block(x) if self.residual else self.block(x)

    class DigitsNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                conv_bn(1, 8),
                InvertedResidual(8, 8, 1, 2),
                InvertedResidual(8, 16, 2, 2),
                InvertedResidual(16, 16, 1, 2),
                conv_bn(16, 32, 1))
            self.classifier = nn.Linear(32, 10)

        def forward(self, x):
            x = self.features(x)
            x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
            return self.classifier(x)

    return DigitsNet()


def train(data: Data, epochs: int = 12, seed: int = 0):
    """Adam with a one-cycle schedule; about 5-10 s on two CPU cores.  Deterministic."""
    import torch
    import torch.nn as nn

    torch.manual_seed(seed)
    torch.set_num_threads(1)          # small tensors: one thread is faster and deterministic
    model = build_model()
    x, y = torch.tensor(data.x_train), torch.tensor(data.y_train)
    steps = epochs * ((len(x) + 63) // 64)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for b in range(0, len(x), 64):
            i = perm[b:b + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i]), y[i]).backward()
            opt.step()
            sched.step()
    model.eval()
    return model


def accuracy_torch(model, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    with torch.no_grad():
        return float((model(torch.tensor(x)).argmax(1).numpy() == y).mean())


def export_onnx(model, path, dynamo: bool = False) -> None:
    """torch.onnx.export with a fixed 1 x 1 x 16 x 16 input named 'input', output 'logits'."""
    import torch

    x = torch.zeros(1, 1, SIZE, SIZE)
    kw = dict(input_names=["input"], output_names=["logits"])
    if dynamo:
        torch.onnx.export(model, (x,), str(path), dynamo=True, external_data=False, **kw)
    else:
        import warnings

        with warnings.catch_warnings():      # the legacy exporter is deprecated, still supported
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, (x,), str(path), dynamo=False, **kw)


def quantize_qdq(src, dst, x_calib: np.ndarray) -> None:
    """onnxruntime's static post-training quantization: QDQ, int8 activations, int8
    per-channel weights."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": x_calib[i:i + 1]} for i in range(len(x_calib))])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True)


def onnxruntime_predict(path, x: np.ndarray) -> np.ndarray:
    """Class predictions of onnxruntime running the .onnx file, one input at a time."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return np.array([int(np.argmax(s.run(None, {"input": x[i:i + 1]})[0])) for i in range(len(x))])
