"""Elementwise int8 ops: ADD and MUL (NumPy-style broadcasting, fused activation) and
LOGISTIC.

ADD follows TensorFlow Lite Micro's reference AddFunc: both inputs are offset, shifted
left by 20 and rescaled by their own multiplier (QuantizeMultiplierSmallerThanOneExp of
scale / (2 * max scale)), summed, and the sum rescaled to the output.  MUL multiplies the
offset inputs and rescales once with MultiplyByQuantizedMultiplier.  The per-element
arithmetic is the same whether TFLM takes its broadcast path or not.

Broadcasting is resolved at compile time: prepare() drops output dimensions of size 1,
merges neighbouring dimensions that broadcast the same way and pads to 6 dimensions, so
the C kernel walks an output of shape ``shape[6]`` with per-input element strides (0 on a
broadcast dimension).  Operands of identical shape use the flat kernel instead: for ADD on a
core with the DSP extension te_add_s8_dsp (SMMLAR, about 13.5 instructions an element on
Cortex-M7 instead of about 100; exactness argued in its header).

LOGISTIC (gemmlowp's fixed-point logistic, input rescaled to Q4.27) maps each of the 256
int8 inputs to one output, so prepare() tabulates it and the kernel is a table lookup.
"""
from __future__ import annotations

import numpy as np

from tinyengine.ops import OpDef, register, target_of, unsupported
from tinyengine.ops import gemmlowp as g
from tinyengine.ops.common import act_bounds, require_int8_to_int8, unary_io
from tinyengine.quant import (multiply_by_quantized_multiplier,
                              multiply_by_quantized_multiplier_smaller_than_one_exp,
                              quantize_multiplier, tflite_round, tflite_scale)

MAX_BROADCAST_DIMS = 6
ADD_LEFT_SHIFT = 20


# -- broadcasting ---------------------------------------------------------------------------
def broadcast_plan(a_shape: tuple, b_shape: tuple, out_shape: tuple) -> dict:
    """Compile-time broadcast description for the C kernels.

    Returns ``same`` (True when a, b and out hold the same elements in the same order)
    and the 6-D ``shape``, ``a_strides``, ``b_strides`` (int32 arrays, element strides,
    0 on broadcast dimensions) of the compressed iteration space.
    """
    n = len(out_shape)
    a_ext = (1,) * (n - len(a_shape)) + tuple(a_shape)
    b_ext = (1,) * (n - len(b_shape)) + tuple(b_shape)
    groups: list = []   # [size, a_full, b_full]
    for d in range(n):
        o = out_shape[d]
        if o == 1:
            continue
        af, bf = a_ext[d] == o, b_ext[d] == o
        if groups and groups[-1][1] == af and groups[-1][2] == bf:
            groups[-1][0] *= o
        else:
            groups.append([o, af, bf])
    same = all(af and bf for _, af, bf in groups)
    if not groups:
        groups = [[1, True, True]]
    shape = [gr[0] for gr in groups]

    def strides(full_flags):
        st, acc = [0] * len(shape), 1
        for i in range(len(shape) - 1, -1, -1):
            if full_flags[i]:
                st[i] = acc
                acc *= shape[i]
        return st

    a_st = strides([gr[1] for gr in groups])
    b_st = strides([gr[2] for gr in groups])
    pad = MAX_BROADCAST_DIMS - len(shape)
    return {
        "same": same,
        "shape": np.array([1] * pad + shape, dtype=np.int32),
        "a_strides": np.array([0] * pad + a_st, dtype=np.int32),
        "b_strides": np.array([0] * pad + b_st, dtype=np.int32),
    }


def _check_binary(node, graph):
    if len(node.inputs) != 2 or any(t is None for t in node.inputs):
        raise unsupported(node, "needs exactly two inputs")
    a, b = graph.tensor(node.inputs[0]), graph.tensor(node.inputs[1])
    y = graph.tensor(node.outputs[0])
    for t, role in ((a, "input 0"), (b, "input 1"), (y, "output")):
        if t.dtype != "int8":
            raise unsupported(node, f"{role} dtype {t.dtype} (supported: int8)")
        if t.quant is None or t.quant.per_channel:
            raise unsupported(node, f"{role} must be per-tensor quantized (supported: int8 per-tensor)")
    if len(y.shape) > MAX_BROADCAST_DIMS or len(a.shape) > MAX_BROADCAST_DIMS \
            or len(b.shape) > MAX_BROADCAST_DIMS:
        raise unsupported(node, f"rank above {MAX_BROADCAST_DIMS} (supported: up to 6-D broadcasting)")
    try:
        bshape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise unsupported(node, f"shapes {a.shape} and {b.shape} do not broadcast") from None
    if tuple(bshape) != tuple(y.shape) and int(np.prod(bshape)) != y.size:
        raise unsupported(node, f"output shape {y.shape} is not the broadcast of {a.shape} and {b.shape}")
    act_bounds(node, y)  # validates the fused activation
    return a, b, y


class _BinaryOp(OpDef):
    """ADD and MUL: int8 inputs broadcast to the output, fused activation.  Subclasses give
    their rescaling parameters (_scales) and the per-element arithmetic before the clamp
    (_raw)."""

    inplace = True   # only when input 0 has the output's shape: see inplace_ok()

    def check(self, node, graph):
        _check_binary(node, graph)

    def inplace_ok(self, node, graph):
        a, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
        return a.size == y.size and a.itemsize == y.itemsize and not a.is_const

    def _scales(self, a, b, y) -> dict:
        raise NotImplementedError

    def _raw(self, a, b, p):
        raise NotImplementedError

    def prepare(self, node, graph):
        a, b = graph.tensor(node.inputs[0]), graph.tensor(node.inputs[1])
        y = graph.tensor(node.outputs[0])
        lo, hi = act_bounds(node, y)
        p = self._scales(a, b, y)
        p.update(in1_offset=-a.quant.zp, in2_offset=-b.quant.zp, out_offset=y.quant.zp,
                 act_min=lo, act_max=hi, size=y.size)
        p.update(broadcast_plan(a.shape, b.shape, tuple(np.broadcast_shapes(a.shape, b.shape))))
        return p

    def reference(self, node, graph, inputs):
        y = graph.tensor(node.outputs[0])
        p = node.params
        raw = self._raw(np.asarray(inputs[0]).astype(np.int64),
                        np.asarray(inputs[1]).astype(np.int64), p)
        out = np.clip(raw, p["act_min"], p["act_max"])
        return [out.astype(np.int8).reshape(y.shape)]


# -- ADD ------------------------------------------------------------------------------------
def add_params(s1: float, s2: float, s_out: float) -> dict:
    """add_common.cc CalculateOpDataAdd (int8): ``twice_max = 2 * (double)max(float s1, float s2)``,
    input multipliers ``(double)s_i / twice_max``, output multiplier
    ``twice_max / ((1 << 20) * (double)s_out)``, each through QuantizeMultiplierSmallerThanOneExp
    (QuantizeMultiplier with a shift <= 0; :meth:`Add.check` refuses what TFLM would abort on)."""
    s1, s2, s_out = tflite_scale(s1), tflite_scale(s2), tflite_scale(s_out)
    twice_max = 2.0 * max(s1, s2)
    m1, sh1 = quantize_multiplier(s1 / twice_max)
    m2, sh2 = quantize_multiplier(s2 / twice_max)
    mo, sho = quantize_multiplier(twice_max / (float(1 << ADD_LEFT_SHIFT) * s_out))
    return dict(left_shift=ADD_LEFT_SHIFT, in1_mult=m1, in1_shift=sh1, in2_mult=m2, in2_shift=sh2,
                out_mult=mo, out_shift=sho)


@register
class Add(_BinaryOp):
    name = "ADD"
    template = "ops/add.c.j2"
    kernels = ("te_add_s8.c", "te_add_bcast_s8.c")   # portable; DSP: see prepare()

    def check(self, node, graph):
        a, b, y = _check_binary(node, graph)
        if not min(a.quant.s, b.quant.s, y.quant.s) > 0:
            raise unsupported(node, f"scales {a.quant.s:g}, {b.quant.s:g} -> {y.quant.s:g} must be "
                              "positive")
        # QuantizeMultiplierSmallerThanOneExp aborts unless its shift is <= 0, i.e. for a real
        # output multiplier of 1 or more (or within 2^-32 below 1, which float32 scales never give)
        if add_params(a.quant.s, b.quant.s, y.quant.s)["out_shift"] > 0:
            real_out = 2.0 * max(a.quant.s, b.quant.s) / (float(1 << ADD_LEFT_SHIFT) * y.quant.s)
            raise unsupported(node, "output scale too small for the input scales "
                              f"(2*max(in scales)/(2^20*out scale) = {real_out:g} must be < 1)")

    def _scales(self, a, b, y) -> dict:
        return add_params(a.quant.s, b.quant.s, y.quant.s)

    def prepare(self, node, graph):
        """Kernel (``params["kernel"]``): te_add_s8_dsp for same-shape operands on a core with
        the DSP extension (it checks its fast path's preconditions itself and is exact
        either way), te_add_s8 for other same-shape ones, te_add_bcast_s8 when broadcasting."""
        p = super().prepare(node, graph)
        if not p["same"]:
            p["kernel"] = "te_add_bcast_s8"
        else:
            p["kernel"] = "te_add_s8_dsp" if target_of(graph).dsp else "te_add_s8"
        return p

    def kernel_sources(self, node) -> tuple:
        if node.params.get("kernel") == "te_add_s8_dsp":
            return ("te_add_s8_dsp.c",)
        return self.kernels

    def _raw(self, a, b, p):
        ls = 1 << p["left_shift"]
        sa = multiply_by_quantized_multiplier_smaller_than_one_exp((a + p["in1_offset"]) * ls,
                                                                   p["in1_mult"], p["in1_shift"])
        sb = multiply_by_quantized_multiplier_smaller_than_one_exp((b + p["in2_offset"]) * ls,
                                                                   p["in2_mult"], p["in2_shift"])
        return multiply_by_quantized_multiplier_smaller_than_one_exp(
            g.wrap_int32(sa + sb), p["out_mult"], p["out_shift"]) + p["out_offset"]


# -- MUL ------------------------------------------------------------------------------------
@register
class Mul(_BinaryOp):
    name = "MUL"
    template = "ops/mul.c.j2"
    kernels = ("te_mul_s8.c", "te_mul_bcast_s8.c")

    def _scales(self, a, b, y) -> dict:
        # mul_common.cc CalculateOpDataMul: (double)s1 * (double)s2 / (double)s_out
        mult, shift = quantize_multiplier(tflite_scale(a.quant.s) * tflite_scale(b.quant.s)
                                          / tflite_scale(y.quant.s))
        return dict(out_mult=mult, out_shift=shift)

    def _raw(self, a, b, p):
        prod = (a + p["in1_offset"]) * (b + p["in2_offset"])
        return multiply_by_quantized_multiplier(prod, p["out_mult"], p["out_shift"]) + p["out_offset"]


# -- LOGISTIC -------------------------------------------------------------------------------
LOGISTIC_INPUT_INTEGER_BITS = 4


def logistic_params(input_scale: float) -> dict:
    """logistic_common.cc CalculateArithmeticOpDataLogistic (int8): ``frexp((double)input_scale
    * (1 << 27))``, the multiplier ``static_cast<int32_t>(round(q * 2^31))`` (not
    QuantizeMultiplier: no halving of 2^31) and CalculateInputRadius(4, left_shift, 31)."""
    import math

    q, left_shift = math.frexp(tflite_scale(input_scale)
                               * float(1 << (31 - LOGISTIC_INPUT_INTEGER_BITS)))
    mult = int(tflite_round(q * float(1 << 31)))
    if mult == (1 << 31):          # static_cast<int32_t> of 2^31 wraps on the reference build
        mult = -(1 << 31)
    radius = g.calculate_input_radius(LOGISTIC_INPUT_INTEGER_BITS, left_shift, 31)
    return {"input_multiplier": mult, "input_left_shift": left_shift, "input_range_radius": radius}


def logistic_s8(x, input_zp: int, mult: int, left_shift: int, radius: int):
    """reference_integer_ops::Logistic (int8) on an array of int8 values."""
    inp = np.asarray(x).astype(np.int64) - input_zp
    q4 = multiply_by_quantized_multiplier(inp, mult, left_shift)
    q0 = g.logistic(q4, LOGISTIC_INPUT_INTEGER_BITS)
    out = np.clip(g.rdbpot(q0, 31 - 8) - 128, -128, 127)
    out = np.where(inp <= -radius, -128, np.where(inp >= radius, 127, out))
    return out.astype(np.int8)


@register
class Logistic(OpDef):
    name = "LOGISTIC"
    template = "ops/logistic.c.j2"
    kernels = ("te_logistic_s8.c",)
    inplace = True

    def check(self, node, graph):
        x, y = unary_io(node, graph)
        require_int8_to_int8(node, x, y)
        if y.quant.zp != -128:
            raise unsupported(node, f"output zero point {y.quant.zp} (TFLite Micro requires -128; "
                              "the output scale is taken as 1/256)")
        if x.size != y.size:
            raise unsupported(node, f"input shape {x.shape} and output shape {y.shape} differ")
        shift = logistic_params(x.quant.s)["input_left_shift"]
        if not 0 <= shift <= 30:
            raise unsupported(node, f"input scale {x.quant.s:g} is out of the supported range")

    def inplace_ok(self, node, graph):
        return True

    def prepare(self, node, graph):
        x, y = graph.tensor(node.inputs[0]), graph.tensor(node.outputs[0])
        p = logistic_params(x.quant.s)
        codes = np.arange(-128, 128, dtype=np.int64)
        table = logistic_s8(codes, x.quant.zp, p["input_multiplier"], p["input_left_shift"],
                            p["input_range_radius"])
        # lut[(uint8_t)x]: entries 0..127 for x = 0..127, then 128..255 for x = -128..-1
        lut = np.concatenate([table[128:], table[:128]]).astype(np.int8)
        p.update(input_zero_point=x.quant.zp, size=y.size, lut=lut)
        return p

    def reference(self, node, graph, inputs):
        y = graph.tensor(node.outputs[0])
        p = node.params
        out = logistic_s8(inputs[0], p["input_zero_point"], p["input_multiplier"],
                          p["input_left_shift"], p["input_range_radius"])
        return [out.reshape(y.shape)]
