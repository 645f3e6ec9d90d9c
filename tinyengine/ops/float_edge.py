"""Float ops at a model's edges: after the last DEQUANTIZE, before the first QUANTIZE.

A published int8 model may end in DEQUANTIZE -> LOG_SOFTMAX (float), or start with a float
normalization (MUL / ADD with a constant) before its QUANTIZE.  TensorFlow Lite Micro runs those
with its float reference kernels; so does TinyEngine, on the host (hostio.host_io, the default)
or in float C on the device (--device-float-io).  The frontend names these nodes
``<OP>_F32`` (FLOAT_EDGE_OPS) and only where they sit at an edge: no int8 layer reads a value
they computed (tail) or produced a value they read (head).

Float results are not bit-exact across libms (expf / logf / tanhf of glibc, newlib and NumPy
differ in the last bits, and a sum's order changes its rounding): they agree with TFLite Micro
within FLOAT_RTOL relative + FLOAT_ATOL absolute, which `verify` checks and reports.

Kernels (firmware/kernels/te_<op>_f32.c) follow TFLite Micro's reference kernels:
* SOFTMAX:     e_c = exp((x_c - max) * beta); y_c = e_c / sum(e)
* LOG_SOFTMAX: y_c = x_c - max - log(sum(exp(x_c - max)))
* LOGISTIC:    1 above 16.619047, exp(x) below -9, else 1 / (1 + exp(-x))
* TANH:        tanh(x)
* ADD / SUB / MUL: elementwise, then the fused activation's float clamp; an input that
  broadcasts must be a constant (it is stored broadcast to the output's shape).
"""
from __future__ import annotations

import numpy as np

from tinyengine.ops import OpDef, register, unsupported

FLOAT_RTOL = 1e-5     # |ours - TFLM| <= FLOAT_RTOL * |TFLM| + FLOAT_ATOL, every float output
FLOAT_ATOL = 1e-6
# TFLite ops that may compute in float at a model's edge (the frontend's <OP>_F32 nodes)
FLOAT_EDGE_OPS = ("SOFTMAX", "LOG_SOFTMAX", "LOGISTIC", "TANH", "ADD", "SUB", "MUL")
LOGISTIC_UPPER = np.float32(16.619047164916992188)
LOGISTIC_LOWER = np.float32(-9.0)
_ACT_RANGE = {"NONE": (-np.inf, np.inf), "RELU": (0.0, np.inf), "RELU6": (0.0, 6.0),
              "RELU_N1_TO_1": (-1.0, 1.0)}


def _c_float(v: float) -> str:
    """An exact float32 C literal (hex), or the infinities of math.h."""
    v = float(np.float32(v))
    if np.isinf(v):
        return "INFINITY" if v > 0 else "-INFINITY"
    return float.hex(v) + "f"


def _float_io(node, graph, n_inputs: int) -> tuple:
    if len(node.inputs) != n_inputs or None in node.inputs or len(node.outputs) != 1:
        raise unsupported(node, f"takes {n_inputs} input(s) and gives one output")
    ins = [graph.tensor(t) for t in node.inputs]
    y = graph.tensor(node.outputs[0])
    for t in ins + [y]:
        if t.dtype != "float32":
            raise unsupported(node, f"tensor '{t.name}' is {t.dtype}; a float op at the model's "
                              "edge takes and gives float32")
    return ins, y


class _Unary(OpDef):
    template = "ops/unary_f32.c.j2"

    def check(self, node, graph):
        (x,), y = _float_io(node, graph, 1)
        if x.size != y.size:
            raise unsupported(node, f"input shape {x.shape} and output shape {y.shape} differ")

    def prepare(self, node, graph):
        x = graph.tensor(node.inputs[0])
        depth = x.shape[-1] if x.shape else 1
        return {"kernel": self.kernels[0][:-2], "size": x.size, "outer": x.size // depth,
                "depth": depth}


@register
class SoftmaxF32(_Unary):
    name = "SOFTMAX_F32"
    template = "ops/softmax_f32.c.j2"
    kernels = ("te_softmax_f32.c",)

    def prepare(self, node, graph):
        p = super().prepare(node, graph)
        beta = float(node.attrs.get("beta", 1.0))
        if not np.isfinite(np.float32(beta)):
            raise unsupported(node, f"beta {beta} (supported: a finite number)")
        p.update(beta=beta, beta_c=_c_float(beta))
        return p

    def reference(self, node, graph, inputs):
        p = node.params
        x = np.asarray(inputs[0], np.float32).reshape(p["outer"], p["depth"])
        e = np.exp((x - x.max(axis=1, keepdims=True)) * np.float32(p["beta"]))
        y = e / e.sum(axis=1, dtype=np.float32, keepdims=True)
        return [y.astype(np.float32).reshape(graph.tensor(node.outputs[0]).shape)]


@register
class LogSoftmaxF32(_Unary):
    name = "LOG_SOFTMAX_F32"
    template = "ops/softmax_f32.c.j2"
    kernels = ("te_log_softmax_f32.c",)

    def reference(self, node, graph, inputs):
        p = node.params
        x = np.asarray(inputs[0], np.float32).reshape(p["outer"], p["depth"])
        m = x.max(axis=1, keepdims=True)
        log_sum = np.log(np.exp(x - m).sum(axis=1, dtype=np.float32, keepdims=True))
        return [(x - m - log_sum).astype(np.float32).reshape(graph.tensor(node.outputs[0]).shape)]


@register
class LogisticF32(_Unary):
    name = "LOGISTIC_F32"
    kernels = ("te_logistic_f32.c",)

    def reference(self, node, graph, inputs):
        x = np.asarray(inputs[0], np.float32)
        with np.errstate(over="ignore"):
            mid = np.float32(1) / (np.float32(1) + np.exp(-x))
        y = np.where(x > LOGISTIC_UPPER, np.float32(1),
                     np.where(x < LOGISTIC_LOWER, np.exp(x), mid))
        return [y.astype(np.float32).reshape(graph.tensor(node.outputs[0]).shape)]


@register
class TanhF32(_Unary):
    name = "TANH_F32"
    kernels = ("te_tanh_f32.c",)

    def reference(self, node, graph, inputs):
        y = np.tanh(np.asarray(inputs[0], np.float32))
        return [y.astype(np.float32).reshape(graph.tensor(node.outputs[0]).shape)]


class _BinaryF32(OpDef):
    """ADD / SUB / MUL in float32 with the fused activation's clamp.  An input with another
    shape than the output must be a constant: prepare() stores it broadcast."""
    template = "ops/binary_f32.c.j2"
    kernels = ("te_binary_f32.c",)
    code = 0          # te_binary_f32's op argument
    fn = None

    def check(self, node, graph):
        (a, b), y = _float_io(node, graph, 2)
        if node.attrs.get("activation", "NONE") not in _ACT_RANGE:
            raise unsupported(node, f"fused activation {node.attrs.get('activation')}")
        try:
            shape = np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise unsupported(node, f"input shapes {a.shape} and {b.shape} do not broadcast") from None
        if int(np.prod(shape, dtype=np.int64)) != y.size:
            raise unsupported(node, f"inputs broadcast to {shape}, the output is {y.shape}")
        for t in (a, b):
            if t.size != y.size and not t.is_const:
                raise unsupported(node, f"input '{t.name}' {t.shape} broadcasts to the output "
                                  f"{y.shape}: supported only for a constant input")

    def prepare(self, node, graph):
        y = graph.tensor(node.outputs[0])
        lo, hi = _ACT_RANGE[node.attrs.get("activation", "NONE")]
        p = {"size": y.size, "op": self.code, "act_min": _c_float(lo), "act_max": _c_float(hi)}
        shape = np.broadcast_shapes(*(graph.tensor(t).shape for t in node.inputs))
        for k, name in enumerate(node.inputs):
            t = graph.tensor(name)
            if t.is_const and t.size != y.size:
                p[f"in{k}_full"] = np.ascontiguousarray(
                    np.broadcast_to(t.data.astype(np.float32), shape)).reshape(-1)
        return p

    def reference(self, node, graph, inputs):
        y = graph.tensor(node.outputs[0])
        lo, hi = _ACT_RANGE[node.attrs.get("activation", "NONE")]
        a, b = (np.asarray(v, np.float32) for v in inputs)
        out = np.clip(type(self).fn(a, b).astype(np.float32), np.float32(lo), np.float32(hi))
        return [out.astype(np.float32).reshape(y.shape)]


@register
class AddF32(_BinaryF32):
    name = "ADD_F32"
    code = 0
    fn = staticmethod(np.add)


@register
class SubF32(_BinaryF32):
    name = "SUB_F32"
    code = 1
    fn = staticmethod(np.subtract)


@register
class MulF32(_BinaryF32):
    name = "MUL_F32"
    code = 2
    fn = staticmethod(np.multiply)
