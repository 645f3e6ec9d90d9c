"""A candidate as a tinyengine IR graph: int8, typical quantization, no file in between.

`lower(space, candidate)` builds the same layers the PyTorch subnet has (`SearchSpace.blocks`), with
batch norm folded and ReLU6 fused, as TFLite's converter writes a MobileNetV2:

    stem       CONV_2D 3x3 stride 2, RELU6
    first      DEPTHWISE_CONV_2D 3x3, RELU6; CONV_2D 1x1; ADD when its widths are equal
    block      CONV_2D 1x1 expand, RELU6; DEPTHWISE_CONV_2D k x k (stride), RELU6; CONV_2D 1x1
               projection; ADD of the block's input when the block is residual
    head       AVERAGE_POOL_2D over the whole map (VALID), FULLY_CONNECTED to the classes

Quantization as TFLite's post-training int8 quantization writes it: weights int8 symmetric per output
channel (conv OHWI along axis 0, depthwise 1HWC along axis 3), the classifier per tensor, biases int32
with scale input scale x weight scale, activations per tensor: after ReLU6 the range [0, 6]
(scale 6/255, zero point -128), projections and residual sums a symmetric-ish range of a plausible
scale drawn from the seed. Each layer draws its random parts from its own stream (the seed and the
layer's name), so that a layer is the same in every candidate where its name, shapes and input range
are (the cost model caches tinyengine's work per layer, tinynas.cost). Weights are random unless `weights` gives float ones by layer name
(`layer_names`), BN already folded; they are then quantized per channel here.

Padding is TFLite's SAME, which for odd kernels gives the PyTorch subnet's output sizes
(`space.conv_out`); with stride 2 on an even map SAME pads one more row at the bottom than at the top,
as any TFLite export of the subnet would.
"""
from __future__ import annotations

import zlib

import numpy as np
import tinyengine as te

from .errors import TinyNasError
from .space import Candidate, SearchSpace

RELU6 = (6.0 / 255.0, -128)   # the [0, 6] range in int8


class _Builder:
    """Adds tensors and nodes to one graph; draws the random parts of each layer from a generator
    seeded by the seed and the layer's name (`rng`)."""

    def __init__(self, name: str, seed: int, weights: dict | None):
        self.tensors: dict = {}
        self.nodes: list = []
        self.seed = seed
        self.weights = weights
        self.used: set = set()
        self.name = name

    def act(self, name: str, shape: tuple, scale: float, zp: int) -> str:
        self.tensors[name] = te.Tensor(name, shape, "int8", te.QuantParams(np.array([scale]), np.array([zp])))
        return name

    def rng(self, name: str) -> np.random.Generator:
        """The random stream of the layer or tensor `name`."""
        return np.random.default_rng(zlib.crc32(f"{self.seed}:{name}".encode()))

    def free_range(self, name: str) -> tuple[float, int]:
        """A plausible range for the activation `name` without ReLU6 (a projection, a sum)."""
        rng = self.rng(name)
        return float(rng.uniform(0.04, 0.12)), int(rng.integers(-10, 11))

    def quantized_weights(self, name: str, shape: tuple, axis: int | None, rng: np.random.Generator,
                          gain: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
        """int8 weights of `shape` and their scales (per channel along `axis`, or one); random ones have
        a real standard deviation of about gain x 0.58 / sqrt(fan-in)."""
        if self.weights is not None:
            if name not in self.weights:
                raise TinyNasError(f"weights: no entry for layer '{name}' (expected one per layer_names())")
            w = np.asarray(self.weights[name], dtype=np.float64)
            if w.shape != shape:
                raise TinyNasError(f"weights: layer '{name}' has shape {w.shape}, the candidate needs {shape}")
            self.used.add(name)
            reduce = tuple(i for i in range(len(shape)) if i != axis) if axis is not None else None
            peak = np.abs(w).max(axis=reduce)
            scale = np.atleast_1d(np.where(peak > 0, peak / 127.0, 1.0))
            bshape = [1] * len(shape)
            if axis is not None:
                bshape[axis] = shape[axis]
            q = np.clip(np.round(w / scale.reshape(bshape)), -127, 127).astype(np.int8)
            return q, scale
        q = rng.integers(-127, 128, size=shape).astype(np.int8)
        n = shape[axis] if axis is not None else 1
        # scaled so that a sum over the fan-in stays near the output's range, as trained layers are
        fan_in = int(np.prod(shape)) // n
        scale = rng.uniform(0.5, 1.5, size=n) * (gain / (127.0 * np.sqrt(fan_in)))
        return q, scale

    def const(self, name: str, data: np.ndarray, scale, axis: int | None) -> str:
        dtype = "int8" if data.dtype == np.int8 else "int32"
        scale = np.atleast_1d(np.asarray(scale, dtype=np.float64))
        quant = te.QuantParams(scale, np.zeros(scale.size, np.int64), axis if scale.size > 1 else None)
        self.tensors[name] = te.Tensor(name, data.shape, dtype, quant, data)
        return name

    def layer(self, op: str, name: str, x: str, cout: int, k: int, stride: int, activation: str,
              out_range: tuple[float, int]) -> str:
        """CONV_2D (dense, 1x1 included) or DEPTHWISE_CONV_2D `name` reading `x`, output int8."""
        n, h, w, cin = self.tensors[x].shape
        in_scale = self.tensors[x].quant.s
        if op == "DEPTHWISE_CONV_2D":
            wshape, axis = (1, k, k, cout), 3
        else:
            wshape, axis = (cout, k, k, cin), 0
        rng = self.rng(name)
        wq, wscale = self.quantized_weights(name, wshape, axis, rng)
        bscale = in_scale * wscale
        bias = np.round(rng.normal(0.0, 0.1, size=cout) / bscale).astype(np.int32)
        wname = self.const(f"{name}.weight", wq, wscale, axis)
        bname = self.const(f"{name}.bias", bias, bscale, 0)
        oh, ow = (h - 1) // stride + 1, (w - 1) // stride + 1
        y = self.act(f"{name}.out", (n, oh, ow, cout), *out_range)
        attrs = {"padding": "SAME", "stride": (stride, stride), "dilation": (1, 1), "activation": activation}
        if op == "DEPTHWISE_CONV_2D":
            attrs["depth_multiplier"] = 1
        self.nodes.append(te.Node(op, name, [x, wname, bname], [y], attrs))
        return y

    def add(self, name: str, a: str, b: str) -> str:
        y = self.act(f"{name}.out", self.tensors[a].shape, *self.free_range(f"{name}.out"))
        self.nodes.append(te.Node("ADD", name, [a, b], [y], {"activation": "NONE"}))
        return y

    def head(self, x: str, classes: int) -> str:
        n, h, w, c = self.tensors[x].shape
        q = self.tensors[x].quant
        pooled = self.act("pool.out", (n, 1, 1, c), q.s, q.zp)   # TFLite's average pool keeps the range
        self.nodes.append(te.Node("AVERAGE_POOL_2D", "pool", [x], [pooled],
                                  {"padding": "VALID", "stride": (1, 1), "filter": (h, w), "activation": "NONE"}))
        # the pooled features are small (means): a classifier of larger weights and a finer output range
        rng = self.rng("fc")
        wq, wscale = self.quantized_weights("fc", (classes, c), None, rng, gain=8.0)
        bscale = q.s * wscale
        bias = np.round(rng.normal(0.0, 0.1, size=classes) / bscale).astype(np.int32)
        wname = self.const("fc.weight", wq, wscale, None)
        bname = self.const("fc.bias", bias, bscale, None)
        y = self.act("logits", (n, classes), float(rng.uniform(0.01, 0.03)), 0)
        self.nodes.append(te.Node("FULLY_CONNECTED", "fc", [pooled, wname, bname], [y],
                                  {"activation": "NONE", "keep_num_dims": False}))
        return y


def layer_names(space: SearchSpace, c: Candidate) -> list[str]:
    """The names `lower` gives the candidate's weighted layers, in order (keys of its `weights`)."""
    names = ["stem"]
    for b in space.blocks(c):
        prefix = _prefix(b)
        names += ([f"{prefix}.expand"] if b.stage >= 0 else []) + [f"{prefix}.dw", f"{prefix}.project"]
    return names + ["fc"]


def _prefix(block) -> str:
    return "first" if block.stage < 0 else f"s{block.stage}.b{block.index}"


def lower(space: SearchSpace, c: Candidate, seed: int = 0, weights: dict | None = None,
          name: str | None = None) -> te.Graph:
    """The candidate as an int8 tinyengine graph (see the module's docstring); a new graph every call."""
    space.validate(c)
    if space.se:
        raise TinyNasError("search space: se=true cannot be lowered to tinyengine yet (it has no "
                           "broadcast multiply / hard sigmoid); use se=false")
    b = _Builder(name or f"nas_r{c.r}", seed, weights)
    x = b.act("input", (1, c.r, c.r, space.in_channels), 1.0 / 128.0, 0)
    x = b.layer("CONV_2D", "stem", x, space.stem_channels, 3, 2, "RELU6", RELU6)
    for blk in space.blocks(c):
        prefix = _prefix(blk)
        inp = x
        if blk.stage >= 0:
            x = b.layer("CONV_2D", f"{prefix}.expand", x, blk.mid, 1, 1, "RELU6", RELU6)
        x = b.layer("DEPTHWISE_CONV_2D", f"{prefix}.dw", x, blk.mid, blk.k, blk.stride, "RELU6", RELU6)
        x = b.layer("CONV_2D", f"{prefix}.project", x, blk.cout, 1, 1, "NONE", b.free_range(f"{prefix}.project.out"))
        if blk.residual:
            x = b.add(f"{prefix}.add", inp, x)
    y = b.head(x, space.num_classes)
    if weights is not None and set(weights) - b.used:
        extra = sorted(set(weights) - b.used)
        raise TinyNasError(f"weights: layer(s) {', '.join(extra[:3])} are not layers of the candidate")
    graph = te.Graph(b.tensors, b.nodes, ["input"], [y], name=b.name)
    graph.validate()
    return graph
