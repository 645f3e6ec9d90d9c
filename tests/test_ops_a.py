"""Operator family A against TensorFlow Lite Micro, bit for bit.

CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, AVERAGE_POOL_2D, MAX_POOL_2D, PAD, PADV2,
RESHAPE, TRANSPOSE, CONCATENATION, RESIZE_NEAREST_NEIGHBOR.

Each case builds a one-op .tflite model, runs TFLite Micro (reference kernels) on a
seeded random int8 input, and requires exact equality with

1. the op's NumPy reference (tinyengine.reference.run over the frontend's graph), and
2. the op's portable C kernel, called through ctypes with the parameters prepare()
   computed, in the argument order of the op's own codegen template (the template is
   rendered and its call parsed, so a template/kernel mismatch fails here too).
"""
from __future__ import annotations

import ctypes
import re
import zlib

import numpy as np
import pytest

from tests.ckernels import load_kernels, ptr
from tests.golden import run_tflm
from tests.tflite_builder import ModelBuilder
from tinyengine import codegen, ops, reference
from tinyengine.compiler import run_passes
from tinyengine.frontends.tflite import load
from tinyengine.hostio import host_io_of
from tinyengine.ops import UnsupportedError
from tinyengine.ops.common import window_geometry


# -- helpers ---------------------------------------------------------------------------------
def _rng(*key) -> np.random.Generator:
    """A generator seeded by the test case (stable across runs: no str hash())."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _rand_i8(rng, shape) -> np.ndarray:
    return rng.integers(-128, 128, size=shape, dtype=np.int64).astype(np.int8)


def _compile(model: bytes):
    graph = run_passes(load(model))
    assert len(graph.nodes) == 1
    return graph, graph.nodes[0]


def _render_call(node, graph, same_buffer=False) -> str:
    """Render the op's template with placeholder names for pointers and array params."""
    opdef = ops.get(node.op)
    p = {k: (f"P_{k}" if isinstance(v, np.ndarray) else v) for k, v in node.params.items()}
    inp = [None if t is None else f"IN{i}" for i, t in enumerate(node.inputs)]
    out = [f"OUT{i}" for i in range(len(node.outputs))]
    return codegen.environment().get_template(opdef.template).render(
        node=node, p=p, inp=inp, out=out, scratch="NULL", same_buffer=same_buffer,
        tin=[graph.tensors[t] if t else None for t in node.inputs],
        tout=[graph.tensors[t] for t in node.outputs])


def _parse_call(text: str) -> tuple:
    m = re.search(r"\b(te_\w+)\s*\((.*)\)\s*;", text, re.S)
    assert m, f"no kernel call in the rendered template:\n{text}"
    return m.group(1), [a.strip() for a in m.group(2).split(",")]


def run_c(node, graph, inputs: list) -> np.ndarray:
    """Run the node's C kernel exactly as its template calls it."""
    lib = load_kernels()
    y = np.zeros(graph.tensors[node.outputs[0]].shape, dtype=np.int8)
    keep = []
    text = _render_call(node, graph)
    fname, args = _parse_call(text)

    def conv(a: str):
        if a.startswith("IN"):
            arr = np.ascontiguousarray(inputs[int(a[2:])])
            keep.append(arr)
            return ptr(arr)
        if a.startswith("OUT"):
            return ptr(y)
        if a.startswith("P_"):
            arr = node.params[a[2:]]
            assert arr.dtype == np.int32
            keep.append(arr)
            return ptr(arr)
        if a == "te_concat_in":
            srcs = [np.ascontiguousarray(inputs[i]) for i, t in enumerate(node.inputs) if t]
            keep.extend(srcs)
            table = (ctypes.c_void_p * len(srcs))(*[s.ctypes.data for s in srcs])
            keep.append(table)
            return table
        return ctypes.c_int32(int(a.rstrip("u")))

    getattr(lib, fname)(*[conv(a) for a in args])
    return y


def check_op(model: bytes, inputs: list, c_kernel: bool = True, golden_model=None):
    """TFLM vs NumPy reference vs C kernel; returns the golden output.

    golden_model: an equivalent model for TFLM to run instead (see test_depthwise_conv_2d).
    """
    golden = run_tflm(golden_model or model, inputs)[0]
    graph, node = _compile(model)
    ref = reference.run(graph, inputs)[0]
    assert ref.dtype == golden.dtype and ref.shape == golden.shape, (ref.shape, golden.shape)
    diff = np.abs(ref.astype(np.int32) - golden.astype(np.int32))
    assert np.array_equal(ref, golden), f"reference differs from TFLM in {np.count_nonzero(diff)} " \
                                        f"of {diff.size} values (max {diff.max()} steps)"
    if c_kernel:
        consts = [graph.tensors[t].data if t and graph.tensors[t].is_const else None
                  for t in node.inputs]
        args = [inputs[0] if i == 0 else c for i, c in enumerate(consts)]
        if node.op == "CONCATENATION":
            args = _concat_args(graph, node, inputs)
        y = run_c(node, graph, args).reshape(golden.shape)
        assert np.array_equal(y, golden), \
            f"C kernel differs from TFLM in {np.count_nonzero(y != golden)} of {y.size} values"
    # the output must not be trivially constant (a vacuous comparison)
    if golden.size >= 16:
        assert len(np.unique(golden)) > 1, "degenerate test: constant output"
    return golden


def _concat_args(graph, node, inputs):
    it = iter(inputs)
    return [graph.tensors[t].data if graph.tensors[t].is_const else next(it)
            for t in node.inputs]


# -- CONV_2D -----------------------------------------------------------------------------------
CONV_CASES = [
    # (in_hw, in_c, out_c, k_hw, stride, dilation, padding, per_channel, act, bias, batch)
    ((8, 8), 3, 8, (1, 1), (1, 1), (1, 1), "VALID", True, "NONE", True, 1),
    ((9, 9), 8, 3, (3, 3), (1, 1), (1, 1), "SAME", True, "RELU", True, 1),
    ((9, 11), 3, 17, (3, 3), (2, 2), (1, 1), "SAME", True, "RELU6", True, 1),
    ((10, 10), 1, 8, (3, 3), (2, 2), (1, 1), "SAME", False, "NONE", True, 1),
    ((11, 8), 17, 8, (5, 5), (1, 1), (1, 1), "SAME", True, "NONE", False, 1),
    ((12, 13), 3, 3, (5, 5), (2, 2), (1, 1), "VALID", False, "RELU", True, 1),
    ((13, 13), 8, 1, (7, 7), (2, 2), (1, 1), "SAME", True, "NONE", True, 1),
    ((15, 9), 1, 8, (10, 4), (1, 1), (1, 1), "SAME", True, "RELU", True, 1),
    ((49, 10), 1, 8, (10, 4), (2, 2), (1, 1), "SAME", True, "RELU", True, 1),   # KWS first layer
    ((12, 12), 3, 8, (3, 3), (1, 1), (2, 2), "SAME", True, "NONE", True, 1),
    ((12, 10), 8, 8, (3, 3), (1, 2), (2, 1), "VALID", False, "RELU6", True, 2),
    ((7, 7), 17, 17, (1, 1), (2, 2), (1, 1), "SAME", True, "NONE", True, 2),
    ((4, 5), 8, 3, (7, 7), (1, 1), (1, 1), "SAME", True, "RELU", True, 1),  # kernel > image
]


def _conv_model(rng, in_hw, in_c, out_c, k_hw, stride, dil, padding, per_channel, act, bias,
                batch, depthwise=False, mult=1, zero_bias=False):
    in_s, in_zp = float(rng.uniform(0.01, 0.1)), int(rng.integers(-20, 20))
    if depthwise:
        out_c = in_c * mult
        w = _rand_i8(rng, (1, *k_hw, out_c))
        k_elems = k_hw[0] * k_hw[1]
        qdim = 3
    else:
        w = _rand_i8(rng, (out_c, *k_hw, in_c))
        k_elems = k_hw[0] * k_hw[1] * in_c
        qdim = 0
    w[w == -128] = -127
    w_s = rng.uniform(0.002, 0.02, size=out_c) if per_channel else \
        np.array([rng.uniform(0.002, 0.02)])
    out_s = in_s * float(np.mean(w_s)) * 100.0 * np.sqrt(k_elems)
    out_zp = int(rng.integers(-30, 30))
    g = window_geometry(padding, in_hw, k_hw, stride, dil)
    mb = ModelBuilder()
    x = mb.tensor("x", (batch, *in_hw, in_c), "int8", scale=in_s, zero_point=in_zp)
    wi = mb.const("w", w, "int8", scale=w_s, zero_point=np.zeros(w_s.size, np.int64),
                  quantized_dimension=qdim)
    bi = -1
    b = rng.integers(-20000, 20000, size=out_c).astype(np.int32)
    if zero_bias:
        b[:] = 0
    if bias or zero_bias:
        b_s = (in_s * w_s).astype(np.float32)
        bi = mb.const("b", b, "int32", scale=b_s, zero_point=np.zeros(out_c, np.int64))
    y = mb.tensor("y", (batch, g["out_h"], g["out_w"], out_c), "int8", scale=out_s,
                  zero_point=out_zp)
    opts = dict(padding=padding, stride_h=stride[0], stride_w=stride[1],
                dilation_h_factor=dil[0], dilation_w_factor=dil[1],
                fused_activation_function=act)
    if depthwise:
        opts["depth_multiplier"] = mult
    mb.op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", [x, wi, bi], [y], **opts)
    mb.inputs([x])
    mb.outputs([y])
    return mb.build(), (batch, *in_hw, in_c)


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{c[0]}x{c[1]}-{c[2]}-k{c[3]}-s{c[4]}"
                         f"-d{c[5]}-{c[6]}-{'pc' if c[7] else 'pt'}-{c[8]}-b{c[10]}")
def test_conv_2d(case):
    rng = _rng("conv", case)
    model, shape = _conv_model(rng, *case)
    check_op(model, [_rand_i8(rng, shape)])


def test_conv_2d_macs():
    rng = _rng("conv-macs")
    model, _ = _conv_model(rng, (8, 8), 3, 8, (3, 3), (2, 2), (1, 1), "SAME", True, "NONE",
                           True, 1)
    graph, node = _compile(model)
    assert ops.get("CONV_2D").macs(node, graph) == 4 * 4 * 8 * 3 * 3 * 3


# -- DEPTHWISE_CONV_2D -------------------------------------------------------------------------
DW_CASES = [
    # (in_hw, in_c, mult, k_hw, stride, dilation, padding, per_channel, act, bias, batch)
    ((9, 9), 8, 1, (3, 3), (1, 1), (1, 1), "SAME", True, "RELU6", True, 1),
    ((10, 11), 3, 2, (3, 3), (2, 2), (1, 1), "SAME", True, "RELU", True, 1),
    ((9, 9), 17, 1, (3, 3), (2, 2), (1, 1), "SAME", False, "NONE", True, 1),
    ((12, 12), 1, 2, (5, 5), (1, 1), (1, 1), "SAME", True, "NONE", False, 1),
    ((13, 12), 8, 1, (7, 7), (2, 2), (1, 1), "SAME", True, "RELU", True, 1),
    ((11, 11), 3, 1, (5, 5), (2, 2), (1, 1), "VALID", True, "NONE", True, 2),
    ((25, 5), 8, 1, (10, 4), (1, 1), (1, 1), "SAME", True, "RELU", True, 1),
    ((12, 12), 8, 2, (3, 3), (1, 1), (2, 2), "SAME", True, "NONE", True, 1),
    ((8, 8), 17, 1, (1, 1), (1, 1), (1, 1), "VALID", False, "RELU6", True, 1),
]


@pytest.mark.parametrize("case", DW_CASES, ids=lambda c: f"{c[0]}x{c[1]}-m{c[2]}-k{c[3]}-s{c[4]}"
                         f"-d{c[5]}-{c[6]}-{'pc' if c[7] else 'pt'}-{c[8]}-b{c[10]}")
def test_depthwise_conv_2d(case):
    in_hw, in_c, mult, k_hw, stride, dil, padding, pc, act, bias, batch = case
    rng = _rng("dw", case)
    model, shape = _conv_model(rng, in_hw, in_c, None, k_hw, stride, dil, padding, pc, act,
                               bias, batch, depthwise=True, mult=mult)
    x = _rand_i8(rng, shape)
    golden_model = None
    if not bias:
        # TFLM (this tflite-micro build) crashes on a DEPTHWISE_CONV_2D without bias; its
        # golden is the same layer with an all-zero bias, which TFLite defines identically.
        golden_model, _ = _conv_model(_rng("dw", case), in_hw, in_c, None, k_hw, stride, dil,
                                      padding, pc, act, bias, batch, depthwise=True,
                                      mult=mult, zero_bias=True)
    check_op(model, [x], golden_model=golden_model)


# -- FULLY_CONNECTED ---------------------------------------------------------------------------
FC_CASES = [
    # (input shape, out_features, per_channel, act, bias, keep_num_dims)
    ((1, 16), 8, False, "NONE", True, False),
    ((1, 17), 3, True, "RELU", True, False),
    ((3, 32), 10, False, "RELU6", True, False),
    ((4, 20), 17, True, "NONE", False, False),
    ((1, 2, 2, 8), 5, False, "NONE", True, False),     # rank-4 input flattened
    ((2, 3, 12), 7, False, "RELU", True, True),        # keep_num_dims
    ((1, 640), 128, False, "RELU", True, False),       # ad01-sized layer
]


def _fc_model(rng, in_shape, out_f, per_channel, act, bias, keep):
    in_f = in_shape[-1] if keep else int(np.prod(in_shape[1:]))
    batches = int(np.prod(in_shape[:-1])) if keep else in_shape[0]
    in_s, in_zp = float(rng.uniform(0.01, 0.2)), int(rng.integers(-40, 40))
    w = _rand_i8(rng, (out_f, in_f))
    w[w == -128] = -127
    w_s = rng.uniform(0.002, 0.02, size=out_f) if per_channel else \
        np.array([rng.uniform(0.002, 0.02)])
    out_s = in_s * float(np.mean(w_s)) * 100.0 * np.sqrt(in_f)
    mb = ModelBuilder()
    x = mb.tensor("x", in_shape, "int8", scale=in_s, zero_point=in_zp)
    wi = mb.const("w", w, "int8", scale=w_s, zero_point=np.zeros(w_s.size, np.int64))
    bi = -1
    if bias:
        b_s = (np.float32(in_s) * w_s.astype(np.float32)).astype(np.float32)
        bi = mb.const("b", rng.integers(-20000, 20000, size=out_f).astype(np.int32), "int32",
                      scale=b_s, zero_point=np.zeros(out_f, np.int64))
    out_shape = (*in_shape[:-1], out_f) if keep else (batches, out_f)
    y = mb.tensor("y", out_shape, "int8", scale=out_s, zero_point=int(rng.integers(-30, 30)))
    mb.op("FULLY_CONNECTED", [x, wi, bi], [y], fused_activation_function=act,
          keep_num_dims=keep)
    mb.inputs([x])
    mb.outputs([y])
    return mb.build()


@pytest.mark.parametrize("case", FC_CASES, ids=lambda c: f"{c[0]}-{c[1]}-"
                         f"{'pc' if c[2] else 'pt'}-{c[3]}-{'b' if c[4] else 'nob'}"
                         f"{'-keep' if c[5] else ''}")
def test_fully_connected(case):
    rng = _rng("fc", case)
    model = _fc_model(rng, *case)
    check_op(model, [_rand_i8(rng, case[0])])


def test_fully_connected_macs():
    rng = _rng("fc-macs")
    graph, node = _compile(_fc_model(rng, (3, 32), 10, False, "NONE", True, False))
    assert ops.get("FULLY_CONNECTED").macs(node, graph) == 3 * 32 * 10


# -- pooling -----------------------------------------------------------------------------------
POOL_CASES = [
    # (op, in_hw, c, filter, stride, padding, act, batch)
    ("AVERAGE_POOL_2D", (8, 8), 3, (2, 2), (2, 2), "VALID", "NONE", 1),
    ("AVERAGE_POOL_2D", (9, 11), 8, (3, 3), (2, 2), "SAME", "RELU", 1),
    ("AVERAGE_POOL_2D", (6, 6), 17, (6, 6), (1, 1), "VALID", "NONE", 2),  # global pool
    ("AVERAGE_POOL_2D", (10, 7), 1, (5, 3), (1, 2), "SAME", "RELU6", 1),
    ("AVERAGE_POOL_2D", (25, 5), 8, (25, 5), (1, 1), "VALID", "NONE", 1),  # KWS pool
    ("AVERAGE_POOL_2D", (8, 8), 3, (3, 3), (2, 2), "SAME", "NONE", 1),  # pads 0 / 1
    ("MAX_POOL_2D", (8, 8), 3, (2, 2), (2, 2), "VALID", "NONE", 1),
    ("MAX_POOL_2D", (9, 11), 8, (3, 3), (2, 2), "SAME", "RELU", 1),
    ("MAX_POOL_2D", (10, 7), 17, (5, 3), (1, 2), "SAME", "RELU6", 2),
    ("MAX_POOL_2D", (7, 7), 1, (3, 3), (3, 3), "SAME", "NONE", 1),
    ("MAX_POOL_2D", (8, 10), 3, (3, 3), (2, 2), "SAME", "NONE", 1),     # pads 0 / 1
]


@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "-".join(map(str, c)))
def test_pooling(case):
    opname, in_hw, c, filt, stride, padding, act, batch = case
    rng = _rng("pool", case)
    g = window_geometry(padding, in_hw, filt, stride)
    s, zp = 0.05, int(rng.integers(-20, 20))
    mb = ModelBuilder()
    x = mb.tensor("x", (batch, *in_hw, c), "int8", scale=s, zero_point=zp)
    y = mb.tensor("y", (batch, g["out_h"], g["out_w"], c), "int8", scale=s, zero_point=zp)
    mb.op(opname, [x], [y], padding=padding, stride_h=stride[0], stride_w=stride[1],
          filter_height=filt[0], filter_width=filt[1], fused_activation_function=act)
    mb.inputs([x])
    mb.outputs([y])
    check_op(mb.build(), [_rand_i8(rng, (batch, *in_hw, c))])


def test_avg_pool_rounds_half_away_from_zero():
    """Sums at exactly .5 of the count, both signs: TFLM rounds them away from zero."""
    mb = ModelBuilder()
    x = mb.tensor("x", (1, 2, 2, 4), "int8", scale=0.1, zero_point=0)
    y = mb.tensor("y", (1, 1, 1, 4), "int8", scale=0.1, zero_point=0)
    mb.op("AVERAGE_POOL_2D", [x], [y], padding="VALID", stride_h=2, stride_w=2,
          filter_height=2, filter_width=2)
    mb.inputs([x])
    mb.outputs([y])
    data = np.array([[1, 1, 0, 0], [-1, -1, 0, 0], [2, 1, 1, 2], [-2, -1, -1, -2]],
                    np.int8).T.reshape(1, 2, 2, 4)
    g = check_op(mb.build(), [data])
    # per channel sums 2, -2, 6, -6 over 4 pixels: 0.5, -0.5, 1.5, -1.5 -> 1, -1, 2, -2
    assert g.reshape(-1).tolist() == [1, -1, 2, -2]


# -- PAD / PADV2 -------------------------------------------------------------------------------
PAD_CASES = [
    ((1, 5, 5, 3), [[0, 0], [1, 1], [1, 1], [0, 0]], "PAD"),
    ((1, 7, 6, 8), [[0, 0], [0, 1], [2, 1], [0, 3]], "PAD"),
    ((2, 4, 3, 1), [[1, 0], [0, 2], [3, 0], [1, 1]], "PADV2"),
    ((5, 7), [[2, 1], [0, 3]], "PAD"),
    ((9,), [[4, 2]], "PADV2"),
    ((2, 3, 4), [[0, 0], [1, 1], [0, 0]], "PAD"),
]


@pytest.mark.parametrize("case", PAD_CASES, ids=lambda c: f"{c[2]}-{c[0]}")
def test_pad(case):
    shape, pads, opname = case
    rng = _rng("pad", case)
    s, zp = 0.05, int(rng.integers(-50, 50))
    pads = np.array(pads, np.int32)
    out_shape = tuple(int(d + a + b) for d, (a, b) in zip(shape, pads))
    mb = ModelBuilder()
    x = mb.tensor("x", shape, "int8", scale=s, zero_point=zp)
    pi = mb.const("paddings", pads, "int32")
    y = mb.tensor("y", out_shape, "int8", scale=s, zero_point=zp)
    ins = [x, pi]
    if opname == "PADV2":
        ins.append(mb.const("cv", np.array([-77], np.int8), "int8", scale=s, zero_point=zp))
    mb.op(opname, ins, [y])
    mb.inputs([x])
    mb.outputs([y])
    g = check_op(mb.build(), [_rand_i8(rng, shape)])
    pad_value = -77 if opname == "PADV2" else zp
    assert g.reshape(-1)[0] == pad_value or not pads.any()


def test_padv2_rejects_other_quantization():
    mb = ModelBuilder()
    x = mb.tensor("x", (1, 4, 4, 2), "int8", scale=0.05, zero_point=3)
    pi = mb.const("paddings", np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32), "int32")
    cv = mb.const("cv", np.array([0], np.int8), "int8", scale=0.1, zero_point=3)
    y = mb.tensor("y", (1, 6, 6, 2), "int8", scale=0.05, zero_point=3)
    mb.op("PADV2", [x, pi, cv], [y])
    mb.inputs([x])
    mb.outputs([y])
    with pytest.raises(UnsupportedError, match="constant_values"):
        _compile(mb.build())


# -- RESHAPE -----------------------------------------------------------------------------------
@pytest.mark.parametrize("shapes", [((1, 4, 4, 8), (1, 128)), ((1, 1, 1, 10), (1, 10)),
                                    ((2, 6), (3, 2, 2))])
def test_reshape(shapes):
    in_shape, out_shape = shapes
    rng = _rng("reshape", shapes)
    mb = ModelBuilder()
    x = mb.tensor("x", in_shape, "int8", scale=0.1, zero_point=4)
    si = mb.const("shape", np.array(out_shape, np.int32), "int32")
    y = mb.tensor("y", out_shape, "int8", scale=0.1, zero_point=4)
    mb.op("RESHAPE", [x, si], [y])
    mb.inputs([x])
    mb.outputs([y])
    model = mb.build()
    check_op(model, [_rand_i8(rng, in_shape)], c_kernel=False)
    graph, node = _compile(model)
    assert ops.get("RESHAPE").inplace
    copy = _render_call(node, graph, same_buffer=False)
    assert re.search(rf"te_move_s8\(\(int8_t \*\)OUT0, \(const int8_t \*\)IN0, "
                     rf"{int(np.prod(in_shape))}\);", copy)
    alias = _render_call(node, graph, same_buffer=True)
    assert "te_move_s8" not in alias and alias.strip().startswith("/*")


# -- TRANSPOSE ---------------------------------------------------------------------------------
TRANSPOSE_CASES = [
    ((1, 4, 5, 3), (0, 3, 1, 2)),
    ((1, 4, 5, 3), (0, 2, 1, 3)),
    ((6, 7), (1, 0)),
    ((2, 3, 4), (2, 0, 1)),
    ((2, 3, 4, 5), (3, 2, 1, 0)),
    ((2, 3, 2, 3, 2), (4, 1, 3, 0, 2)),
]


@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_transpose(case):
    shape, perm = case
    rng = _rng("transpose", case)
    mb = ModelBuilder()
    x = mb.tensor("x", shape, "int8", scale=0.1, zero_point=-2)
    pi = mb.const("perm", np.array(perm, np.int32), "int32")
    y = mb.tensor("y", tuple(shape[p] for p in perm), "int8", scale=0.1, zero_point=-2)
    mb.op("TRANSPOSE", [x, pi], [y])
    mb.inputs([x])
    mb.outputs([y])
    check_op(mb.build(), [_rand_i8(rng, shape)])


# -- CONCATENATION -----------------------------------------------------------------------------
CONCAT_CASES = [
    ([(1, 4, 4, 3), (1, 4, 4, 5)], 3),
    ([(1, 4, 4, 3), (1, 2, 4, 3), (1, 1, 4, 3)], 1),
    ([(2, 3), (2, 3), (2, 1), (2, 7)], 1),
    ([(2, 3), (1, 3)], 0),
    ([(1, 2, 3, 4), (1, 2, 3, 4)], -2),
    ([(1, 8, 1, 1), (1, 8, 1, 1), (1, 8, 1, 1)], 2),
]


def _concat_model(shapes, axis, quants=None):
    rank = len(shapes[0])
    ax = axis % rank
    out_shape = list(shapes[0])
    out_shape[ax] = sum(s[ax] for s in shapes)
    quants = quants or [(0.07, 5)] * (len(shapes) + 1)
    mb = ModelBuilder()
    xs = [mb.tensor(f"x{i}", s, "int8", scale=quants[i][0], zero_point=quants[i][1])
          for i, s in enumerate(shapes)]
    y = mb.tensor("y", tuple(out_shape), "int8", scale=quants[-1][0], zero_point=quants[-1][1])
    mb.op("CONCATENATION", xs, [y], axis=axis)
    mb.inputs(xs)
    mb.outputs([y])
    return mb.build()


@pytest.mark.parametrize("case", CONCAT_CASES, ids=lambda c: f"{len(c[0])}in-axis{c[1]}")
def test_concatenation(case):
    shapes, axis = case
    rng = _rng("concat", case)
    check_op(_concat_model(shapes, axis), [_rand_i8(rng, s) for s in shapes])


def test_concatenation_with_constant_input():
    rng = _rng("concat-const")
    mb = ModelBuilder()
    x = mb.tensor("x", (1, 3, 4), "int8", scale=0.07, zero_point=5)
    c = mb.const("c", _rand_i8(rng, (1, 2, 4)), "int8", scale=0.07, zero_point=5)
    y = mb.tensor("y", (1, 5, 4), "int8", scale=0.07, zero_point=5)
    mb.op("CONCATENATION", [c, x], [y], axis=1)
    mb.inputs([x])
    mb.outputs([y])
    check_op(mb.build(), [_rand_i8(rng, (1, 3, 4))])


@pytest.mark.parametrize("quants", [[(0.07, 5), (0.05, 5), (0.07, 5)],
                                    [(0.07, 5), (0.07, 5), (0.07, 6)]])
def test_concatenation_rejects_mixed_quantization(quants):
    model = _concat_model([(1, 2, 2, 3), (1, 2, 2, 3)], 3, quants)
    with pytest.raises(UnsupportedError, match="equal quantization"):
        _compile(model)


# -- RESIZE_NEAREST_NEIGHBOR ------------------------------------------------------------------
RESIZE_CASES = [
    ((1, 4, 4, 3), (8, 8), False, False),
    ((1, 5, 3, 2), (10, 7), False, False),
    ((1, 5, 3, 2), (10, 7), True, False),
    ((1, 5, 3, 2), (10, 7), False, True),
    ((2, 7, 9, 1), (3, 4), False, True),       # downscale
    ((1, 7, 9, 4), (3, 4), True, False),
    ((1, 3, 3, 8), (1, 1), True, False),
    ((1, 6, 5, 3), (13, 11), False, True),
]


@pytest.mark.parametrize("case", RESIZE_CASES, ids=lambda c: f"{c[0]}-{c[1]}-ac{int(c[2])}"
                         f"-hp{int(c[3])}")
def test_resize_nearest_neighbor(case):
    shape, size, ac, hp = case
    rng = _rng("resize", case)
    mb = ModelBuilder()
    x = mb.tensor("x", shape, "int8", scale=0.1, zero_point=1)
    si = mb.const("size", np.array(size, np.int32), "int32")
    y = mb.tensor("y", (shape[0], *size, shape[3]), "int8", scale=0.1, zero_point=1)
    mb.op("RESIZE_NEAREST_NEIGHBOR", [x, si], [y], align_corners=ac, half_pixel_centers=hp)
    mb.inputs([x])
    mb.outputs([y])
    check_op(mb.build(), [_rand_i8(rng, shape)])


# -- the real models' layers ------------------------------------------------------------------
FAMILY_A = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D",
            "PAD", "PADV2", "RESHAPE", "TRANSPOSE", "CONCATENATION", "RESIZE_NEAREST_NEIGHBOR"}


def _tflm_all_tensors(path, inputs: list) -> dict:
    """Every tensor of one TFLM inference (kPreserveAllTensors), keyed by tensor index."""
    from tflite_micro import runtime
    interp = runtime.Interpreter.from_file(
        str(path), arena_size=16 * 1024 * 1024,
        intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    for i, x in enumerate(inputs):
        interp.set_input(x, i)
    interp.invoke()
    return interp


def _tensor_indices(path) -> dict:
    """Frontend tensor name -> index in the flatbuffer (same naming rule as the frontend)."""
    import tflite
    sg = tflite.Model.GetRootAsModel(open(path, "rb").read(), 0).Subgraphs(0)
    out: dict = {}
    for i in range(sg.TensorsLength()):
        name = (sg.Tensors(i).Name() or b"").decode("utf-8", "replace") or f"tensor_{i}"
        out[f"{name}#{i}" if name in out else name] = i
    return out


@pytest.mark.parametrize("model", ["mlperf_tiny/vww_96_int8.tflite",
                                   "mlperf_tiny/kws_ref_model.tflite",
                                   "mlperf_tiny/pretrainedResnet_quant.tflite",
                                   "mlperf_tiny/ad01_int8.tflite",
                                   "mcunet/mcunet-vww1.tflite"])
def test_real_model_layers(models_dir, model):
    """Every family-A layer of a real model, fed TFLM's own input tensor, must give TFLM's
    output tensor exactly, through the NumPy reference and through the C kernel."""
    path = models_dir / model
    graph = run_passes(load(path))
    x_t = host_io_of(graph).model_inputs[0]
    rng = _rng("real", model)
    if x_t.dtype == "float32":
        x = rng.uniform(0.0, 1.0, size=x_t.shape).astype(np.float32)
    else:
        x = _rand_i8(rng, x_t.shape)
    interp = _tflm_all_tensors(path, [x])
    index = _tensor_indices(path)

    def tflm(name):
        t = graph.tensors[name]
        if t.is_const:
            return t.data
        return np.array(interp.GetTensor(index[name], 0)["tensor_data"]).reshape(t.shape)

    checked = 0
    for node in graph.nodes:
        if node.op not in FAMILY_A:
            continue
        args = [None if t is None else tflm(t) for t in node.inputs]
        want = tflm(node.outputs[0])
        ref = ops.get(node.op).reference(node, graph, args)[0]
        assert np.array_equal(ref.reshape(want.shape), want), f"{node}: reference != TFLM"
        if node.op != "RESHAPE":
            y = run_c(node, graph, args).reshape(want.shape)
            assert np.array_equal(y, want), f"{node}: C kernel != TFLM"
        checked += 1
    assert checked >= 5


def test_relu6_bound_is_computed_in_float32():
    """6 / 0.047058824f is exactly 127.5 in float32 (127.4999975 in double): TFLite rounds
    the float32 quotient, so RELU6's upper bound is zero_point + 128."""
    s, zp = 0.047058824, -10
    mb = ModelBuilder()
    x = mb.tensor("x", (1, 4, 4, 2), "int8", scale=s, zero_point=zp)
    y = mb.tensor("y", (1, 2, 2, 2), "int8", scale=s, zero_point=zp)
    mb.op("MAX_POOL_2D", [x], [y], padding="VALID", stride_h=2, stride_w=2, filter_height=2,
          filter_width=2, fused_activation_function="RELU6")
    mb.inputs([x])
    mb.outputs([y])
    data = np.full((1, 4, 4, 2), 127, np.int8)
    data[0, :2, :2, 0] = 0
    g = check_op(mb.build(), [data])
    assert g.max() == zp + 128
