"""Training schemes: which parameters of a network the device updates (sparse update).

A scheme names the biases and the weights that are trained; everything else stays frozen
(in Flash).  The new classifier head is always trained in full (weights and bias).

  bias_last  K       the biases of the last K trainable layers (the head counts as one)
  weights    {LAYER: RATIO}   the weights of LAYER, only the fraction RATIO in (0, 1] of its
                     output channels: those with the largest weight magnitude (the L2 norm of
                     the channel's real weights, scale * q); ties to the lower channel
  full               every bias and every weight (full backpropagation, to compare)

A trainable layer is a CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED node of the network as
tinyengine runs it (after its passes), named by its tinyengine node name (`tinyengine
compile --verbose` and the errors list them) or by its index among the trainable layers
(0 the first, -1 the head).

JSON form (`--scheme s.json`), every key optional:

    {"bias_last": 6, "weights": {"conv_2d_57": 0.5, "-3": 0.25}, "full": false}

Flags: `--bias-last K`, `--weights LAYER:RATIO,...`, `--full`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TRAINABLE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


class SchemeError(ValueError):
    """A scheme that cannot be applied (the message names the file, option or layer)."""


@dataclass(frozen=True)
class Scheme:
    bias_last: int = 0
    weights: tuple = ()          # ((layer, ratio), ...): layer a node name or an int index
    full: bool = False
    source: str = "flags"        # where it came from, for errors

    def __post_init__(self):
        if not isinstance(self.bias_last, int) or isinstance(self.bias_last, bool) \
                or self.bias_last < 0:
            raise SchemeError(f"{self.source}: bias_last must be an integer >= 0, got "
                              f"{self.bias_last!r}")
        for layer, ratio in self.weights:
            if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) \
                    or not 0 < ratio <= 1:
                raise SchemeError(f"{self.source}: the ratio of layer {layer} must be in (0, 1], "
                                  f"got {ratio!r}")


@dataclass(frozen=True)
class Layer:
    """A trainable layer of the forward graph."""
    index: int
    name: str
    op: str
    weights: str                 # tensor names
    bias: str | None
    channels: int                # output channels


@dataclass(frozen=True)
class Targets:
    """What one layer trains: bias (whole) and the selected output channels of its weights."""
    bias: bool = False
    channels: tuple | None = None    # None: weights frozen

    @property
    def any(self) -> bool:
        return self.bias or self.channels is not None


def _layer_key(text):
    """A layer given as text: an int index where it reads as one, else a node name."""
    t = str(text).strip()
    try:
        return int(t)
    except ValueError:
        return t


def from_flags(bias_last: int | None = None, weights: str | None = None, full: bool = False
               ) -> Scheme:
    """The scheme of --bias-last K, --weights LAYER:RATIO,... and --full."""
    pairs = []
    for item in (weights or "").split(","):
        if not item.strip():
            continue
        layer, sep, ratio = item.rpartition(":")
        if not sep or not layer.strip():
            raise SchemeError(f"--weights: '{item}' is not LAYER:RATIO (e.g. conv_2d_57:0.5)")
        try:
            r = float(ratio)
        except ValueError:
            raise SchemeError(f"--weights: the ratio in '{item}' is not a number") from None
        pairs.append((_layer_key(layer), r))
    return Scheme(bias_last=int(bias_last or 0), weights=tuple(pairs), full=bool(full),
                  source="--weights" if pairs else "--bias-last")


def load(path) -> Scheme:
    """The scheme of a JSON file (module docstring)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as e:
        raise SchemeError(f"{p}: cannot read the scheme ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise SchemeError(f"{p}: not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict):
        raise SchemeError(f"{p}: a scheme is a JSON object with bias_last, weights, full")
    unknown = sorted(set(data) - {"bias_last", "weights", "full"})
    if unknown:
        raise SchemeError(f"{p}: unknown key '{unknown[0]}' (keys: bias_last, weights, full)")
    weights = data.get("weights", {})
    if not isinstance(weights, dict):
        raise SchemeError(f"{p}: 'weights' must map layer names or indices to ratios")
    if not isinstance(data.get("full", False), bool):
        raise SchemeError(f"{p}: 'full' must be true or false, got {data['full']!r}")
    return Scheme(bias_last=data.get("bias_last", 0),
                  weights=tuple((_layer_key(k), v) for k, v in weights.items()),
                  full=data.get("full", False), source=str(p))


def trainable_layers(graph) -> list:
    """The graph's trainable layers in execution order."""
    out = []
    for node in graph.nodes:
        if node.op in TRAINABLE_OPS:
            w = graph.tensors[node.inputs[1]]
            bias = node.inputs[2] if len(node.inputs) > 2 else None
            out.append(Layer(len(out), node.name, node.op, w.name, bias,
                             w.shape[-1] if node.op == "DEPTHWISE_CONV_2D" else w.shape[0]))
    return out


def find_layer(layers: list, key, source: str) -> Layer:
    """The layer named (or indexed) by key; SchemeError listing the trainable layers."""
    for layer in layers:
        if layer.name == key:
            return layer
    if isinstance(key, int) and -len(layers) <= key < len(layers):
        return layers[key]
    names = ", ".join(f"{lay.index}:{lay.name}" for lay in layers)
    raise SchemeError(f"{source}: layer {key!r} does not exist (trainable layers: {names})")


def top_channels(graph, layer: Layer, ratio: float) -> tuple:
    """The round(ratio * channels) (at least 1) output channels with the largest L2 norm of
    real weights, in increasing order."""
    w = graph.tensors[layer.weights]
    q = np.asarray(w.data, np.float64)
    q = q.reshape(-1, layer.channels).T if layer.op == "DEPTHWISE_CONV_2D" \
        else q.reshape(layer.channels, -1)
    scale = np.broadcast_to(w.quant.scale if w.quant is not None else 1.0, (layer.channels,))
    norm = np.sqrt((q * q).sum(axis=1)) * np.abs(scale)
    k = max(1, int(round(ratio * layer.channels)))
    order = np.argsort(-norm, kind="stable")[:k]
    return tuple(int(c) for c in sorted(order))


def resolve(scheme: Scheme, graph, head: str) -> dict:
    """node name -> Targets for every layer that trains something (the head in full)."""
    layers = trainable_layers(graph)
    head_layer = find_layer(layers, head, "head")
    every = tuple(range(head_layer.channels))
    out = {head_layer.name: Targets(bias=head_layer.bias is not None, channels=every)}
    if scheme.full:
        for lay in layers:
            out[lay.name] = Targets(bias=lay.bias is not None, channels=tuple(range(lay.channels)))
        return {lay.name: out[lay.name] for lay in layers}
    if scheme.bias_last > len(layers):
        raise SchemeError(f"{scheme.source}: bias_last {scheme.bias_last} is more than the "
                          f"{len(layers)} trainable layers")
    for lay in layers[len(layers) - scheme.bias_last:] if scheme.bias_last else ():
        if lay.name not in out and lay.bias is not None:
            out[lay.name] = Targets(bias=True)
    for key, ratio in scheme.weights:
        lay = find_layer(layers, key, scheme.source)
        if lay.name == head_layer.name:
            continue
        prev = out.get(lay.name, Targets())
        out[lay.name] = Targets(bias=prev.bias, channels=top_channels(graph, lay, ratio))
    return {lay.name: out[lay.name] for lay in layers if lay.name in out}   # forward order
