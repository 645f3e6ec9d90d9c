"""Operator family B: ADD, MUL, MEAN, SOFTMAX, LOG_SOFTMAX, LOGISTIC, QUANTIZE, DEQUANTIZE.

Every case builds a one-op .tflite model, runs TensorFlow Lite Micro on seeded random
inputs for the golden output, and requires bit-exact equality with (1) the op's NumPy
reference (tinyengine.reference) and (2) the op's portable C kernel called through ctypes
with the parameters prepare() computed.
"""
from __future__ import annotations

import ctypes

import numpy as np
import pytest

from ckernels import load_kernels, ptr
from golden import run_tflm
from tflite_builder import ModelBuilder
from tinyengine import ops, reference
from tinyengine.frontends.tflite import load
from tinyengine.ops import UnsupportedError

# -- harness --------------------------------------------------------------------------------


def compile_graph(model: bytes):
    g = load(model)
    for n in g.nodes:
        op = ops.get(n.op)
        op.check(n, g)
        n.params = op.prepare(n, g)
    return g


def _arg(v):
    if isinstance(v, np.ndarray):
        return ptr(np.ascontiguousarray(v))
    if isinstance(v, float):
        return ctypes.c_float(v)
    if isinstance(v, (bool, np.bool_)):
        return ctypes.c_int32(int(v))
    return ctypes.c_int32(int(v))


def call(fn: str, *args):
    keep = [a for a in args if isinstance(a, np.ndarray)]  # keep arrays alive
    getattr(load_kernels(), fn)(*[_arg(a) for a in args])
    del keep


def run_c(node, graph, inputs: list, inplace: bool = False) -> np.ndarray:
    """Run the node's C kernel on `inputs` (graph inputs; constants come from the graph)."""
    p = node.params
    vals, k = [], 0
    for name in node.inputs:
        t = graph.tensor(name)
        if t.is_const:
            vals.append(np.ascontiguousarray(t.data))
        else:
            vals.append(np.ascontiguousarray(np.asarray(inputs[k], dtype=t.np_dtype).reshape(t.shape)))
            k += 1
    y = graph.tensor(node.outputs[0])
    out = vals[0] if inplace else np.zeros(y.shape, dtype=y.np_dtype)
    x = vals[0]
    if node.op in ("ADD", "MUL"):
        a, b = vals[0], vals[1]
        if node.op == "ADD":
            q = (p["in1_offset"], p["in1_mult"], p["in1_shift"], p["in2_offset"], p["in2_mult"],
                 p["in2_shift"], p["left_shift"], p["out_offset"], p["out_mult"], p["out_shift"],
                 p["act_min"], p["act_max"])
        else:
            q = (p["in1_offset"], p["in2_offset"], p["out_offset"], p["out_mult"], p["out_shift"],
                 p["act_min"], p["act_max"])
        name = "te_add" if node.op == "ADD" else "te_mul"
        if p["same"]:
            call(name + "_s8", a, b, out, p["size"], *q)
        else:
            call(name + "_bcast_s8", a, b, out, p["shape"], p["a_strides"], p["b_strides"], *q)
    elif node.op == "MEAN":
        call("te_mean_s8", x, out, p["keep_ndim"], p["keep_shape"], p["keep_strides"],
             p["red_ndim"], p["red_shape"], p["red_strides"], p["count"], p["in_zp"], p["out_zp"],
             p["mult"], p["shift"])
    elif node.op == "SOFTMAX":
        fn = "te_softmax_s8_s16" if p["out_bits"] == 16 else "te_softmax_s8"
        call(fn, x, out, p["outer"], p["depth"], p["exp_lut"])
    elif node.op == "LOG_SOFTMAX":
        call("te_log_softmax_s8", x, out, p["outer"], p["depth"], p["exp_lut"],
             p["input_multiplier"], p["input_left_shift"], p["reverse_scaling_divisor"],
             p["reverse_scaling_shift"], p["diff_min"])
    elif node.op == "LOGISTIC":
        call("te_logistic_s8", x, out, p["size"], p["lut"])
    elif node.op == "QUANTIZE":
        if p["kernel"].startswith("te_quantize_f32"):
            call(p["kernel"], x, out, p["size"], float(p["scale"]), p["out_zp"])
        else:
            call(p["kernel"], x, out, p["size"], p["in_zp"], p["out_zp"], p["mult"], p["shift"])
    elif node.op == "DEQUANTIZE":
        call(p["kernel"], x, out, p["size"], float(p["scale"]), p["zp"])
    else:  # pragma: no cover
        raise AssertionError(node.op)
    return out.reshape(y.shape)


def check_all(model: bytes, inputs: list, inplace: bool = False):
    """TFLM golden vs NumPy reference vs C kernel, bit for bit."""
    gold = run_tflm(model, inputs)[0]
    g = compile_graph(model)
    ref = reference.run(g, inputs)[0]
    got_c = run_c(g.nodes[0], g, inputs)
    gold = np.asarray(gold).reshape(ref.shape)
    assert ref.dtype == gold.dtype
    assert np.array_equal(ref, gold), f"reference != TFLM at {np.argwhere(ref != gold)[:5].tolist()}"
    assert np.array_equal(got_c, gold), f"C kernel != TFLM at {np.argwhere(got_c != gold)[:5].tolist()}"
    if inplace:
        got_inplace = run_c(g.nodes[0], g, inputs, inplace=True)
        assert np.array_equal(got_inplace, gold), "in-place C kernel differs"
    return g, gold


def rand(rng, shape, dtype="int8"):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, shape).astype(dtype)


# -- ADD / MUL ------------------------------------------------------------------------------
BINARY_CASES = [
    # a shape, b shape, (a scale, zp), (b scale, zp), (out scale, zp), activation, b const
    ((1, 8, 8, 16), (1, 8, 8, 16), (0.05, 3), (0.03, -2), (0.08, 1), "NONE", False),
    ((1, 8, 8, 16), (1, 8, 8, 16), (0.02, -128), (0.02, -128), (0.04, -128), "RELU", False),
    ((1, 6, 6, 8), (8,), (0.05, 3), (0.03, -2), (0.08, 1), "RELU", False),
    ((1, 6, 6, 8), (1, 6, 1, 1), (0.05, 3), (0.03, -2), (0.008, 1), "RELU6", False),
    ((2, 1, 3, 1), (1, 5, 1, 4), (0.05, 3), (0.03, -2), (0.02, 1), "NONE", False),
    ((1, 1, 1, 8), (1, 5, 5, 8), (0.1, 0), (0.02, 7), (0.05, -3), "NONE", False),
    ((1, 6, 6, 8), (1,), (0.05, 3), (0.5, -2), (0.01, 1), "NONE", True),         # const scalar
    ((1, 6, 6, 8), (1, 1, 1, 8), (0.05, 3), (0.01, 0), (0.06, 1), "RELU", True),  # const vector
    ((1, 4, 4, 8), (1, 4, 4, 8), (0.05, 3), (0.04, 9), (0.06, -1), "NONE", True), # const tensor
    ((1,), (2, 3, 4), (0.05, 3), (0.5, -2), (0.01, 1), "RELU_N1_TO_1", False),
    ((2, 3, 4, 5, 6), (3, 1, 5, 1), (0.05, 3), (0.05, 3), (0.1, 0), "NONE", False),
    ((2, 1, 3, 1, 2, 1), (1, 2, 1, 3, 1, 2), (0.05, 3), (0.5, -2), (0.1, 1), "NONE", False),
]


def binary_model(op, sa, sb, qa, qb, qo, act, const_b, b_data):
    out_shape = tuple(np.broadcast_shapes(sa, sb))
    mb = ModelBuilder()
    a = mb.tensor("a", sa, "int8", scale=qa[0], zero_point=qa[1])
    if const_b:
        b = mb.const("b", b_data, "int8", scale=qb[0], zero_point=qb[1])
    else:
        b = mb.tensor("b", sb, "int8", scale=qb[0], zero_point=qb[1])
    y = mb.tensor("y", out_shape, "int8", scale=qo[0], zero_point=qo[1])
    mb.op(op, [a, b], [y], fused_activation_function=act)
    mb.inputs([a] if const_b else [a, b])
    mb.outputs([y])
    return mb.build()


@pytest.mark.parametrize("op", ["ADD", "MUL"])
@pytest.mark.parametrize("case", BINARY_CASES, ids=lambda c: f"{c[0]}x{c[1]}-{c[5]}{'-const' if c[6] else ''}")
def test_binary(op, case):
    sa, sb, qa, qb, qo, act, const_b = case
    rng = np.random.default_rng(hash((op, sa, sb)) % 2**32)
    a_in, b_in = rand(rng, sa), rand(rng, sb)
    model = binary_model(op, sa, sb, qa, qb, qo, act, const_b, b_in)
    inputs = [a_in] if const_b else [a_in, b_in]
    same_as_out = tuple(sa) == tuple(np.broadcast_shapes(sa, sb))
    g, _ = check_all(model, inputs, inplace=same_as_out)
    assert ops.get(op).inplace_ok(g.nodes[0], g) == same_as_out


def test_mul_multiplier_above_one():
    rng = np.random.default_rng(7)
    sa = (1, 4, 4, 8)
    model = binary_model("MUL", sa, sa, (0.5, 1), (0.4, -3), (0.05, 2), "NONE", False, None)
    g, _ = check_all(model, [rand(rng, sa), rand(rng, sa)])
    assert g.nodes[0].params["out_shift"] > 0


def test_add_rejects_out_scale_too_small():
    sa = (1, 4)
    model = binary_model("ADD", sa, sa, (1.0, 0), (1.0, 0), (1e-7, 0), "NONE", False, None)
    g = load(model)
    with pytest.raises(UnsupportedError, match="add_0.*ADD.*output scale"):
        ops.get("ADD").check(g.nodes[0], g)


def test_binary_rejects_int16():
    mb = ModelBuilder()
    a = mb.tensor("a", (1, 4), "int16", scale=0.01, zero_point=0)
    b = mb.tensor("b", (1, 4), "int16", scale=0.01, zero_point=0)
    y = mb.tensor("y", (1, 4), "int16", scale=0.02, zero_point=0)
    mb.op("MUL", [a, b], [y])
    mb.inputs([a, b])
    mb.outputs([y])
    g = load(mb.build())
    with pytest.raises(UnsupportedError, match=r"mul_0.*MUL.*int16.*supported: int8"):
        ops.get("MUL").check(g.nodes[0], g)


# -- MEAN -----------------------------------------------------------------------------------
MEAN_CASES = [
    # shape, axes, keep_dims, (in scale, zp), (out scale, zp)
    ((1, 7, 5, 16), [1, 2], True, (0.05, 3), (0.05, 3)),
    ((1, 7, 5, 16), [1, 2], False, (0.05, 3), (0.02, -5)),
    ((2, 6, 6, 8), [2, 1], True, (0.05, -3), (0.1, 4)),
    ((2, 6, 6, 8), [1, 2], False, (0.05, -3), (0.05, -3)),
    ((2, 5, 4, 6), [1], True, (0.1, 2), (0.03, 1)),
    ((2, 5, 4, 6), [1], False, (0.1, 2), (0.3, 1)),
    ((1, 4, 6, 8), [3], True, (0.1, 0), (0.1, 0)),
    ((1, 4, 6, 8), [-1], False, (0.1, -1), (0.07, 5)),
    ((2, 3, 4, 5), [0, 1, 2, 3], True, (0.1, 2), (0.07, 1)),
    ((2, 3, 4, 5), [0, 1, 2, 3], False, (0.1, 2), (0.1, 2)),
    ((3, 4, 5, 6), [0, 2], False, (0.08, -7), (0.02, 3)),
    ((4, 10, 12), [1], True, (0.05, 0), (0.01, -2)),   # scale ratio > 1
]


@pytest.mark.parametrize("case", MEAN_CASES, ids=lambda c: f"{c[0]}-ax{c[1]}-keep{c[2]}")
def test_mean(case):
    shape, axes, keep, qi, qo = case
    rank = len(shape)
    red = sorted({a % rank for a in axes})
    if keep:
        oshape = tuple(1 if d in red else s for d, s in enumerate(shape))
    else:
        oshape = tuple(s for d, s in enumerate(shape) if d not in red)
    mb = ModelBuilder()
    x = mb.tensor("x", shape, "int8", scale=qi[0], zero_point=qi[1])
    ax = mb.const("axes", np.array(axes, np.int32), "int32")
    y = mb.tensor("y", oshape or (1,), "int8", scale=qo[0], zero_point=qo[1])
    mb.op("MEAN", [x, ax], [y], keep_dims=keep)
    mb.inputs([x])
    mb.outputs([y])
    rng = np.random.default_rng(len(shape) * 100 + sum(axes))
    check_all(mb.build(), [rand(rng, shape)])


# -- SOFTMAX / LOG_SOFTMAX --------------------------------------------------------------------
SOFTMAX_CASES = [
    # shape, beta, (in scale, zp), out dtype
    ((2, 10), 1.0, (0.1, 3), "int8"),
    ((1, 100), 1.0, (0.5, 0), "int8"),
    ((3, 4, 17), 0.5, (0.05, -10), "int8"),
    ((1, 1, 1, 1000), 1.0, (0.1, -4), "int8"),   # TFLM aborts if the exp sum reaches 512
    ((5, 7), 0.5, (0.25, 20), "int8"),
    ((4, 64), 1.0, (0.00390625, -128), "int8"),
    ((2, 50), 1.0, (0.02, 0), "int16"),
    ((3, 9), 0.5, (0.3, -5), "int16"),
]


@pytest.mark.parametrize("case", SOFTMAX_CASES, ids=lambda c: f"{c[0]}-beta{c[1]}-s{c[2][0]}-{c[3]}")
def test_softmax(case):
    shape, beta, qi, odt = case
    mb = ModelBuilder()
    x = mb.tensor("x", shape, "int8", scale=qi[0], zero_point=qi[1])
    if odt == "int8":
        y = mb.tensor("y", shape, "int8", scale=1.0 / 256, zero_point=-128)
    else:
        y = mb.tensor("y", shape, "int16", scale=1.0 / 65536, zero_point=-32768)
    mb.op("SOFTMAX", [x], [y], beta=beta)
    mb.inputs([x])
    mb.outputs([y])
    rng = np.random.default_rng(int(qi[0] * 1000) + len(shape))
    xin = rand(rng, shape)
    xin.reshape(-1, shape[-1])[0, :8] = 17         # ties (a whole row of 512+ ties aborts TFLM)
    check_all(mb.build(), [xin], inplace=(odt == "int8"))


def test_softmax_rejects_wrong_output_quant():
    mb = ModelBuilder()
    x = mb.tensor("x", (1, 10), "int8", scale=0.1, zero_point=0)
    y = mb.tensor("y", (1, 10), "int8", scale=1.0 / 255, zero_point=-128)
    mb.op("SOFTMAX", [x], [y], beta=1.0)
    mb.inputs([x])
    mb.outputs([y])
    g = load(mb.build())
    with pytest.raises(UnsupportedError, match=r"softmax_0.*SOFTMAX.*1/256"):
        ops.get("SOFTMAX").check(g.nodes[0], g)


@pytest.mark.parametrize("shape,qi", [((2, 10), (0.1, 3)), ((4, 33), (0.3, -7)),
                                      ((4, 33), (0.02, 5)), ((1, 2, 3, 40), (1.0, 0)),
                                      ((3, 300), (0.05, -20))])
def test_log_softmax(shape, qi):
    mb = ModelBuilder()
    x = mb.tensor("x", shape, "int8", scale=qi[0], zero_point=qi[1])
    y = mb.tensor("y", shape, "int8", scale=16.0 / 256, zero_point=127)
    mb.op("LOG_SOFTMAX", [x], [y])
    mb.inputs([x])
    mb.outputs([y])
    rng = np.random.default_rng(int(qi[0] * 100) + shape[-1])
    check_all(mb.build(), [rand(rng, shape)], inplace=True)


# -- LOGISTIC -------------------------------------------------------------------------------
@pytest.mark.parametrize("qi", [(0.01, 0), (0.05, 5), (0.1, -20), (0.3, 5), (1.0, -128),
                                (0.0625, 0), (2.5, 10)])
def test_logistic(qi):
    shape = (2, 256)
    mb = ModelBuilder()
    x = mb.tensor("x", shape, "int8", scale=qi[0], zero_point=qi[1])
    y = mb.tensor("y", shape, "int8", scale=1.0 / 256, zero_point=-128)
    mb.op("LOGISTIC", [x], [y])
    mb.inputs([x])
    mb.outputs([y])
    xin = np.concatenate([np.arange(-128, 128), np.random.default_rng(3).integers(-128, 128, 256)])
    check_all(mb.build(), [xin.astype(np.int8).reshape(shape)], inplace=True)


def test_logistic_rejects_wrong_zero_point():
    mb = ModelBuilder()
    x = mb.tensor("x", (4,), "int8", scale=0.1, zero_point=0)
    y = mb.tensor("y", (4,), "int8", scale=1.0 / 256, zero_point=0)
    mb.op("LOGISTIC", [x], [y])
    mb.inputs([x])
    mb.outputs([y])
    g = load(mb.build())
    with pytest.raises(UnsupportedError, match=r"logistic_0.*LOGISTIC.*-128"):
        ops.get("LOGISTIC").check(g.nodes[0], g)


# -- QUANTIZE / DEQUANTIZE ----------------------------------------------------------------------
QUANT_CASES = [
    # in dtype, (in scale, zp) or None, out dtype, (out scale, zp)
    ("float32", None, "int8", (0.05, 3)),
    ("float32", None, "int8", (0.0078125, -128)),
    ("float32", None, "int16", (0.001, 0)),
    ("int8", (0.05, 3), "int8", (0.02, -4)),     # multiplier > 1
    ("int8", (0.05, 3), "int8", (0.2, -4)),
    ("int8", (0.05, 3), "int8", (0.05, 10)),     # same scale, zero point shift
    ("int8", (0.05, 3), "int16", (0.0002, 0)),
    ("int16", (0.0005, 0), "int8", (0.05, 2)),
    ("int16", (0.0005, 0), "int16", (0.0003, 0)),
]


@pytest.mark.parametrize("case", QUANT_CASES, ids=lambda c: f"{c[0]}-{c[2]}-{c[3][0]}")
def test_quantize(case):
    din, qi, dout, qo = case
    shape = (4, 100)
    mb = ModelBuilder()
    x = mb.tensor("x", shape, din, scale=qi[0] if qi else None, zero_point=qi[1] if qi else None)
    y = mb.tensor("y", shape, dout, scale=qo[0], zero_point=qo[1])
    mb.op("QUANTIZE", [x], [y])
    mb.inputs([x])
    mb.outputs([y])
    rng = np.random.default_rng(11)
    if din == "float32":
        s = np.float32(qo[0])
        k = rng.integers(-140, 140, shape).astype(np.float32)
        xin = (rng.standard_normal(shape) * 60 * s).astype(np.float32)
        xin[0] = (k[0] + np.float32(0.5)) * s         # near the rounding ties
        xin[1] = -(k[1] + np.float32(0.5)) * s
        xin[2, :4] = [0.0, -0.0, 1e6, -1e6]
    else:
        xin = rand(rng, shape, din)
    check_all(mb.build(), [xin], inplace=(din == dout))


@pytest.mark.parametrize("din,qi", [("int8", (0.0537, 3)), ("int8", (1.0 / 3, -128)),
                                    ("int16", (0.000537, 0))])
def test_dequantize(din, qi):
    shape = (3, 200)
    mb = ModelBuilder()
    x = mb.tensor("x", shape, din, scale=qi[0], zero_point=qi[1])
    y = mb.tensor("y", shape, "float32")
    mb.op("DEQUANTIZE", [x], [y])
    mb.inputs([x])
    mb.outputs([y])
    check_all(mb.build(), [rand(np.random.default_rng(5), shape, din)])


def test_quantize_rejects_per_channel():
    mb = ModelBuilder()
    x = mb.tensor("x", (2, 3), "float32")
    y = mb.tensor("y", (2, 3), "int8", scale=np.array([0.1, 0.2, 0.3]), zero_point=np.zeros(3),
                  quantized_dimension=1)
    mb.op("QUANTIZE", [x], [y])
    mb.inputs([x])
    mb.outputs([y])
    g = load(mb.build())
    with pytest.raises(UnsupportedError, match=r"quantize_0.*QUANTIZE.*per-channel"):
        ops.get("QUANTIZE").check(g.nodes[0], g)


# -- templates ------------------------------------------------------------------------------
def test_templates_render_calls():
    """Each template renders one call of a kernel its OpDef lists."""
    import jinja2
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(root / "codegen_templates")),
                             undefined=jinja2.StrictUndefined)
    rng = np.random.default_rng(0)
    models = {
        "ADD": binary_model("ADD", (1, 4, 4, 8), (8,), (0.05, 3), (0.03, -2), (0.08, 1), "RELU", False, None),
        "MUL": binary_model("MUL", (1, 4), (1, 4), (0.05, 3), (0.03, -2), (0.08, 1), "NONE", False, None),
    }
    for op in ("SOFTMAX", "LOG_SOFTMAX", "LOGISTIC", "QUANTIZE", "DEQUANTIZE"):
        mb = ModelBuilder()
        fin = op == "QUANTIZE"
        x = mb.tensor("x", (2, 8), "float32" if fin else "int8", scale=None if fin else 0.1,
                      zero_point=None if fin else 0)
        qo = {"SOFTMAX": (1 / 256, -128), "LOG_SOFTMAX": (16 / 256, 127), "LOGISTIC": (1 / 256, -128),
              "QUANTIZE": (0.1, 0), "DEQUANTIZE": None}[op]
        y = mb.tensor("y", (2, 8), "float32" if op == "DEQUANTIZE" else "int8",
                      scale=qo[0] if qo else None, zero_point=qo[1] if qo else None)
        mb.op(op, [x], [y], **({"beta": 1.0} if op == "SOFTMAX" else {}))
        mb.inputs([x])
        mb.outputs([y])
        models[op] = mb.build()
    del rng
    for op, model in models.items():
        g = compile_graph(model)
        node = g.nodes[0]
        opdef = ops.get(op)
        p = {k: (f"{node.name}_{k}" if isinstance(v, np.ndarray) else v) for k, v in node.params.items()}
        text = env.get_template(opdef.template).render(
            node=node, p=p, inp=[f"in{i}" for i in range(len(node.inputs))], out=["out0"],
            scratch="NULL", tin=[g.tensor(t) for t in node.inputs], tout=[g.tensor(node.outputs[0])])
        fn = text.strip().split("(")[0]
        assert f"{fn}.c" in opdef.kernels, (op, fn)
        assert text.strip().endswith(");")
