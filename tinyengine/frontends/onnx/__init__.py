"""ONNX frontend: a .onnx file -> TinyEngine IR (int8, NHWC), parsed with the `onnx` package.

Two kinds of model are accepted:

* QDQ int8 models (QuantizeLinear / DequantizeLinear around the compute ops), as written by
  ``onnxruntime.quantization.quantize_static`` with int8 (or uint8) activations and int8
  per-channel or per-tensor symmetric weights.  Every Q/DQ pair is folded into the
  quantization parameters of the tensor between them; constant weights and int32 biases
  behind a DequantizeLinear become quantized constants.
* float models, quantized by :mod:`tinyengine.quantizer` from calibration data (per-channel
  symmetric int8 weights, per-tensor asymmetric int8 activations, int32 biases).  Without
  calibration data the frontend stops with a message saying how to give it.

Both are lowered the same way, once, at compile time, one module per stage:

1. ``reading``: parse; constant-fold (Constant, Shape, and any node whose inputs are all
   constants); Identity / Dropout are dropped;
2. ``simplify``: BatchNormalization is folded into the preceding Conv; Relu / Clip(0, 6) /
   Clip(-1, 1) are fused into the producing Conv / Gemm / MatMul / Add / Mul as a TFLite fused
   activation;
3. ``qdq`` (or, for a float model, ``calibration``) gives every activation tensor its int8
   parameters; ops that only move data keep their input's, Sigmoid / Softmax outputs take
   TFLite's fixed 1/256, -128 (with a requantization when a QDQ file says otherwise);
   ``shapes`` infers every tensor's ONNX shape on the way;
4. ``lowering`` (``lower_compute``, ``lower_layout``, on an ``IRBuilder``): each ONNX op becomes
   the IR's TFLite-style op: Conv -> CONV_2D (OHWI weights) or DEPTHWISE_CONV_2D (1HW(C*M)),
   Gemm / MatMul -> FULLY_CONNECTED, GlobalAveragePool / ReduceMean -> MEAN, ...  Every 4-D
   activation is NHWC; Flatten / Reshape of a tensor whose NCHW and NHWC orders differ get a
   TRANSPOSE so the element order stays ONNX's.

The model's float NCHW input enters through a QUANTIZE node and leaves through a DEQUANTIZE
node, which the ``host_io`` pass moves to the host; ``graph.meta["edge_layout"]`` tells the
``edge_layout`` pass to transpose NCHW <-> NHWC on the host too, so `run --input x.npy` takes
the model's own NCHW float32 input and writes its own float32 output.
"""
from __future__ import annotations

from ... import quantizer
from ...errors import ModelError
from ...ir import Graph, IRError
from ...ops import UnsupportedError
from .calibration import calibrate, float_edges
from .lowering import lower
from .model import SUPPORTED, OnnxGraph, toposort_nodes
from .qdq import fold_qdq, propagate_quant
from .reading import parse, read_model
from .shapes import infer_shapes
from .simplify import fold_batchnorm, fuse_activations

__all__ = ["SUPPORTED", "load"]


def load(model, calibration: quantizer.Calibration | None = None, name: str | None = None) -> Graph:
    """Load an .onnx model (path or bytes) into a validated, topologically sorted int8 Graph."""
    label = name or ("<model bytes>" if isinstance(model, (bytes, bytearray, memoryview)) else str(model))
    mp = read_model(model, label)
    try:
        g = parse(mp, label)
        fold_batchnorm(g)
        fuse_activations(g)
        _quantize(g, calibration)
        return lower(g)
    except (ModelError, UnsupportedError, IRError, quantizer.CalibrationError) as e:
        msg = str(e)
        raise type(e)(msg if msg.startswith(label) else f"{label}: {msg}") from None
    except Exception as e:   # a malformed protobuf fails anywhere (missing attributes, bad dims)
        raise ModelError(f"{label}: malformed ONNX model ({type(e).__name__}: {e})") from None


def _quantize(g: OnnxGraph, calibration) -> None:
    """Stage 3: every activation's int8 parameters, from the file's Q/DQ nodes or from
    calibration data; shapes inferred once the graph's edges are final."""
    g.qdq = any(n.op in ("QuantizeLinear", "DequantizeLinear") for n in g.nodes)
    if g.qdq:
        fold_qdq(g)
    else:
        float_edges(g)
    g.nodes = toposort_nodes(g.nodes)
    infer_shapes(g)
    if g.qdq:
        propagate_quant(g)
    else:
        calibrate(g, calibration)
