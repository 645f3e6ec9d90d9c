"""FULLY_CONNECTED (int8 activations, int8 weights [out, in], int32 bias).

TFLite Micro's reference kernels (``reference_integer_ops::FullyConnected`` and
``FullyConnectedPerChannel``)::

    acc = sum_i (w[o, i] + weights_offset) * (x[b, i] + input_offset)   (int32)
    acc += bias[o]                                                        (if bias)
    y   = clamp(MultiplyByQuantizedMultiplier(acc, M, S) + output_zero_point)

MultiplyByQuantizedMultiplier rounds twice (SRDHM, then RoundingDivideByPOT).  The
multiplier is ``QuantizeMultiplier(double(in_scale) * double(w_scale[o]) / double(out_scale))``
in both cases (:func:`per_tensor_multiplier`, :func:`tinyengine.ops.conv.per_channel_multipliers`).
Per-tensor weights with a negative scale product are refused: TFLite Micro refuses them too.

The input may have any rank; it is read as [batches, in_features] with batches taken
from the output (all output dims but the last).  Weights must be symmetric (zero point
0), which TFLite requires for int8.  The C kernels get
``acc_init[o] = bias[o] + input_offset * sum_i w[o, i]`` folded at compile time.
"""
from __future__ import annotations

import numpy as np

from tinyengine.ops import OpDef, register, target_of, unsupported
from tinyengine.ops.chanpack import ChannelParams
from tinyengine.ops.common import act_bounds, c_i32, fold_input_offset, require_int8
from tinyengine.ops.conv import (acc_bound, fold_constant_channels, fold_negative_multipliers,
                                  interleave_rows, per_channel_multipliers, requant_dsp,
                                  srdhm_may_saturate)
from tinyengine.quant import multiply_by_quantized_multiplier, tflite_scale, wrap_int32


def pack_weights_fc_dsp(w2d) -> np.ndarray:
    """[out, K] int8 weights -> the layout of te_fully_connected_s8_dsp.h.

    Each row is zero-padded to 4 * ceil(K / 4) values; rows go in quads (4q .. 4q+3) with
    their groups of 4 interleaved (4 bytes of each row in turn); the out % 4 last rows follow
    one after the other.
    """
    return interleave_rows(w2d, 4)


def per_tensor_multiplier(in_scale: float, w_scale: float, out_scale: float) -> tuple:
    """(multiplier, shift) of per-tensor weights: CalculateOpDataFullyConnected ->
    GetQuantizedConvolutionMultipler (kernel_util.cc) -> QuantizeMultiplier.

    The pinned tflite-micro multiplies the two scales in double (``_runtime.so``: both floats
    widened with cvtss2sd, then mulsd and divsd), the same arithmetic as the per-channel case:
    ``(double)in_scale * (double)w_scale / (double)out_scale``.  (The August 2026 source of
    kernel_util.cc still read ``static_cast<double>(in_scale * w_scale)``, a float32 product;
    on ad01's last layer that gives 1462485078 instead of 1462485049.)
    """
    mult, shift = per_channel_multipliers(in_scale, [w_scale], out_scale, 1)
    return int(mult[0]), int(shift[0])


def scale_product(in_scale: float, w_scale: float) -> float:
    """GetQuantizedConvolutionMultipler's ``input_product_scale``, which must be >= 0."""
    return tflite_scale(in_scale) * tflite_scale(w_scale)


@register
class FullyConnected(OpDef):
    """Kernels: te_fully_connected_s8 (per-tensor), te_fully_connected_per_channel_s8;
    on a target with the DSP extension te_fully_connected_s8_dsp (both cases; prepare()
    records the choice in ``params["kernel"]``)."""

    name = "FULLY_CONNECTED"
    template = "ops/fully_connected.c.j2"
    kernels = ("te_fully_connected_s8.c", "te_fully_connected_per_channel_s8.c")
    DSP_KERNEL = "te_fully_connected_s8_dsp"
    # Below this many FULLY_CONNECTED MACs in the whole model (typically the classifier head of
    # a conv net: 160 x 2 on MCUNet) the DSP kernel's ~1.3 KB of code costs more Flash than its
    # saving (a few instructions per MAC, a few thousand in all) is worth: the portable kernels
    # run them.
    DSP_MIN_MODEL_MACS = 4096

    def _use_dsp(self, graph) -> bool:
        if not target_of(graph).dsp:
            return False
        total = sum(self.macs(n, graph) for n in graph.nodes if n.op == self.name)
        return total >= self.DSP_MIN_MODEL_MACS

    def prepare_context(self, node, graph) -> tuple:
        return (self._use_dsp(graph),)

    def kernel_sources(self, node) -> tuple:
        if node.params.get("kernel") == self.DSP_KERNEL:
            return (f"{self.DSP_KERNEL}.c",)
        return self.kernels

    def template_for(self, node) -> str:
        if node.params.get("kernel") == self.DSP_KERNEL:
            return "ops/fully_connected_dsp.c.j2"
        return self.template

    def check(self, node, graph) -> None:
        if len(node.inputs) < 2 or node.inputs[0] is None or node.inputs[1] is None:
            raise unsupported(node, "needs an input and a weight tensor")
        require_int8(node, graph, [node.inputs[0]], "input")
        require_int8(node, graph, [node.outputs[0]], "output")
        x = graph.tensor(node.inputs[0])
        w = graph.tensor(node.inputs[1])
        y = graph.tensor(node.outputs[0])
        if w.dtype != "int8" or not w.is_const or w.quant is None or len(w.shape) != 2:
            raise unsupported(node, f"weights must be a constant quantized int8 [out, in] "
                                    f"matrix (got {w.dtype} {w.shape})")
        out_f, in_f = w.shape
        if np.any(w.quant.zero_point != 0):
            raise unsupported(node, "weights must be symmetric (zero point 0)")
        if w.quant.per_channel:
            if w.quant.scale.size != out_f:
                raise unsupported(node, f"{w.quant.scale.size} weight scales for {out_f} outputs")
            if w.quant.axis not in (None, 0):
                raise unsupported(node, f"per-channel weights along axis {w.quant.axis} (need 0)")
        elif not scale_product(x.quant.scale[0], w.quant.scale[0]) >= 0:
            raise unsupported(node, f"negative per-tensor weight scale {float(w.quant.scale[0]):g}: "
                                    "TFLite Micro requires input scale * weight scale >= 0 "
                                    "(negative scales are supported per channel)")
        if not y.shape or y.shape[-1] != out_f:
            last = y.shape[-1] if y.shape else "none"
            raise unsupported(node, f"output's last dim {last} != {out_f} weight rows")
        batches = y.size // out_f
        if x.size != batches * in_f:
            raise unsupported(node, f"input {x.shape} does not flatten to [{batches}, {in_f}]")
        b = node.inputs[2] if len(node.inputs) > 2 else None
        if b is not None:
            bt = graph.tensor(b)
            if bt.dtype != "int32" or not bt.is_const or bt.size != out_f:
                raise unsupported(node, f"bias must be a constant int32 vector of {out_f} values")
        act_bounds(node, y)

    def _quant(self, node, graph) -> dict:
        x = graph.tensor(node.inputs[0])
        w = graph.tensor(node.inputs[1])
        y = graph.tensor(node.outputs[0])
        out_f = w.shape[0]
        if w.quant.per_channel:
            mult, shift = per_channel_multipliers(x.quant.scale[0], w.quant.scale,
                                                  y.quant.scale[0], out_f)
        else:
            m, s = per_tensor_multiplier(x.quant.scale[0], w.quant.scale[0], y.quant.scale[0])
            mult, shift = np.array([m], np.int64), np.array([s], np.int64)
        act_min, act_max = act_bounds(node, y)
        return dict(per_channel=bool(w.quant.per_channel),
                    input_offset=-int(x.quant.zero_point[0]),
                    weights_offset=-int(w.quant.zero_point[0]),
                    output_offset=int(y.quant.zero_point[0]),
                    out_mult=mult, out_shift=shift, act_min=int(act_min), act_max=int(act_max),
                    scales=(float(x.quant.scale[0]), float(y.quant.scale[0])))

    def prepare(self, node, graph) -> dict:
        w = graph.tensor(node.inputs[1])
        y = graph.tensor(node.outputs[0])
        out_f, in_f = w.shape
        q = self._quant(node, graph)
        b = node.inputs[2] if len(node.inputs) > 2 else None
        bias = None if b is None else graph.tensor(b).data
        params = dict(
            per_channel=q["per_channel"], batches=y.size // out_f, in_features=in_f,
            out_features=out_f, acc_init=c_i32(fold_input_offset(bias, q["input_offset"], w.data, 0)),
            output_offset=q["output_offset"], act_min=q["act_min"], act_max=q["act_max"],
        )
        if q["per_channel"]:
            params.update(out_mult=c_i32(q["out_mult"]), out_shift=c_i32(q["out_shift"]))
        else:
            params.update(out_mult=int(q["out_mult"][0]), out_shift=int(q["out_shift"][0]))
        if self._use_dsp(graph):
            # per-tensor: one (multiplier, shift) pair, per-channel: one per output
            w2d = np.asarray(w.data).reshape(out_f, in_f)
            acc_init, mult, shift = params["acc_init"], q["out_mult"], q["out_shift"]
            if q["per_channel"]:
                acc_init, w2d, mult = fold_negative_multipliers(
                    acc_init, w2d, mult, shift, acc_bound(acc_init, w2d))
                acc_init, mult, shift, w2d = fold_constant_channels(
                    acc_init, w2d, mult, shift,
                    clamp=(q["output_offset"], q["act_min"], q["act_max"]))
            bound = acc_bound(acc_init, w2d)
        if self._use_dsp(graph) and not srdhm_may_saturate(mult, shift, bound):
            mult, rshift, mode = requant_dsp(
                mult, shift, bound if q["per_channel"] else bound.max(),
                q["output_offset"], q["act_min"], q["act_max"])
            params.update(kernel=self.DSP_KERNEL, w_packed=pack_weights_fc_dsp(w2d),
                          acc_init=c_i32(acc_init), rq_mult=mult, rq_shift=rshift,
                          rq_mode=mode, rq_scales=q["scales"])
        else:
            params.update(kernel="te_fully_connected_s8" if not q["per_channel"]
                          else "te_fully_connected_per_channel_s8")
        return params

    def reference(self, node, graph, inputs: list) -> list:
        x, w = inputs[0], inputs[1]
        bias = inputs[2] if len(inputs) > 2 else None
        y_t = graph.tensor(node.outputs[0])
        out_f, in_f = w.shape
        q = self._quant(node, graph)
        xs = x.reshape(-1, in_f).astype(np.float64) + q["input_offset"]
        ws = w.astype(np.float64) + q["weights_offset"]
        # |products| <= 255 * 255, sums far below 2^53: the float64 matmul is exact
        acc = wrap_int32(np.rint(xs @ ws.T).astype(np.int64))
        if bias is not None:
            acc = wrap_int32(acc + bias.astype(np.int64))
        y = multiply_by_quantized_multiplier(acc, q["out_mult"], q["out_shift"])
        y = np.clip(y + q["output_offset"], q["act_min"], q["act_max"]).astype(np.int8)
        return [y.reshape(y_t.shape)]

    def macs(self, node, graph) -> int:
        w = graph.tensor(node.inputs[1])
        y = graph.tensor(node.outputs[0])
        return int(y.size) * int(w.shape[1])

    def channel_params(self, node):
        """The DSP kernel's acc_init, rq_mult and rq_shift when per channel (planar)."""
        p = node.params
        if p.get("kernel") != self.DSP_KERNEL or not p["per_channel"]:
            return None
        return ChannelParams(p["acc_init"], p["rq_mult"],
                             np.asarray(p["rq_shift"], dtype=np.int64) & 0xFF,
                             int(p["out_features"]), scales=p.get("rq_scales"))
