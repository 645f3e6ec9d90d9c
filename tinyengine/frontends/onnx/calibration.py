"""Stage 3 for float files: int8 parameters from calibration data (:mod:`tinyengine.quantizer`).

The float inputs / outputs get synthetic ``__QUANTIZE_IN`` / ``__DEQUANTIZE_OUT`` nodes; every
tensor an op computes gets per-tensor asymmetric int8 parameters from the ranges onnxruntime
sees on the calibration data; the rest follow :func:`qdq.propagate_quant`'s rules.
"""
from __future__ import annotations

from ... import quantizer
from ...ops import UnsupportedError
from .model import OnnxGraph, OnnxNode
from .qdq import FIXED, KEEP, propagate_quant


def float_edges(g: OnnxGraph) -> None:
    synth = []
    ren_in = {}
    for x in g.inputs:
        q = f"{x}:q"
        ren_in[x] = q
        g.origin[q] = x
        synth.append(OnnxNode("__QUANTIZE_IN", f"{x}:quantize", [x], [q]))
    ren_out = {}
    outs = []
    for y in g.outputs:
        if y in g.inputs:
            raise UnsupportedError(f"graph output '{y}' is a graph input; nothing to compute")
        q = f"{y}:q"
        ren_out[y] = q
        g.origin[q] = y
        synth.append(OnnxNode("__DEQUANTIZE_OUT", f"{y}:dequantize", [q], [y]))
        outs.append(y)
    for n in g.nodes:
        n.inputs = [ren_in.get(t, ren_out.get(t, t)) if t else t for t in n.inputs]
        n.outputs = [ren_out.get(t, t) for t in n.outputs]
    g.outputs = outs
    g.nodes = synth + g.nodes


def _calibrated_outputs(g: OnnxGraph):
    """The outputs whose range calibration measures (the others follow their inputs)."""
    for n in g.nodes:
        if n.op in KEEP or n.op in FIXED or n.op == "__DEQUANTIZE_OUT":
            continue
        for o in n.outputs:
            if o:
                yield o


def calibrate(g: OnnxGraph, calibration) -> None:
    if calibration is None or calibration.source is None:
        shp = " x ".join(str(d) for d in g.shape[g.inputs[0]][1:])
        raise quantizer.CalibrationError(
            f"float model: TinyEngine compiles int8 and quantizes a float ONNX model only from "
            f"calibration data; give --calibration data.npy (N x {shp} float32, the model's own "
            "layout) or --calibration DIR (a folder of images, see --calib-size/--calib-mean/"
            "--calib-std), or quantize it to QDQ int8 with onnxruntime.quantization.quantize_static")
    if len(g.inputs) != 1:
        raise UnsupportedError(f"calibration of a model with {len(g.inputs)} inputs "
                               "(supported: one)")
    x = g.inputs[0]
    data = calibration.load(g.shape[x], g.label)
    need = [x] + [g.origin.get(o, o) for o in _calibrated_outputs(g)]
    ranges = quantizer.calibrate(g.mp, need, data, x)
    for o in _calibrated_outputs(g):
        g.quant[o] = quantizer.activation_quant(*ranges[g.origin.get(o, o)])
    propagate_quant(g)
