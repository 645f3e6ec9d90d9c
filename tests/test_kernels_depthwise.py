"""DEPTHWISE_CONV_2D kernels: the DSP kernel against TFLite Micro and its portable twin,
their in-place (overlapping output) contract, and whole models through the pipeline.

1. Host: te_depthwise_conv_2d_s8_dsp compiled natively (te_dsp.h's plain-C fallbacks) on
   many shapes, called through ctypes exactly as its template calls it, equal to TFLM and
   to te_depthwise_conv_2d_s8.
2. Host: both kernels run with the output overlapping the input, starting at
   input + overlap_bytes(node) (and lower): still equal to TFLM; out_c + 1 bytes higher
   breaks them.
3. QEMU (marked `qemu`): models with many depthwise layers compiled for stm32f746 (M7) and
   stm32f411 (M4), where prepare() picks the DSP kernel, and for the host: `verify`
   against TFLM.
4. The DSP kernel's optional pixel loops (TE_DW_DSP_*): left out natively, still equal to
   the portable twin; a generated project leaves out exactly those its calls do not take
   (the firmware links none of them, runs no more instructions, equals TFLM); loops left out
   on purpose under QEMU still equal TFLM.
"""
from __future__ import annotations

import ctypes
import functools
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests.ckernels import CFLAGS, KERNELS, load_kernels, ptr
from tests.golden import run_tflm, run_tflm_many
from tests.test_ops_a import _conv_model, _parse_call, _rand_i8, _rng
from tests.tflite_builder import ModelBuilder
from tinyengine import codegen, ops, planner, runner
from tinyengine import output_specs
from tinyengine.cli import main
from tinyengine.compiler import run_passes
from tinyengine.frontends.tflite import load
from tinyengine.hostio import host_io_of
from tinyengine.ops import Target
from tinyengine.ops.common import window_geometry
from tinyengine.ops.depthwise_conv import DSP, PORTABLE

M7 = Target("stm32f746", "cortex-m7", True)

CASES = [
    # (in_hw, in_c, mult, k_hw, stride, dilation, padding, per_channel, act)
    ((9, 9), 8, 1, (3, 3), (1, 1), (1, 1), "SAME", True, "RELU6"),
    ((10, 11), 12, 1, (3, 3), (2, 2), (1, 1), "SAME", True, "RELU"),
    ((9, 9), 17, 1, (3, 3), (2, 2), (1, 1), "SAME", False, "NONE"),
    ((7, 6), 1, 1, (3, 3), (1, 1), (1, 1), "VALID", True, "NONE"),
    ((12, 12), 5, 1, (5, 5), (1, 1), (1, 1), "SAME", True, "NONE"),
    ((13, 12), 33, 1, (7, 7), (2, 2), (1, 1), "SAME", True, "RELU"),
    ((5, 5), 24, 1, (7, 7), (1, 1), (1, 1), "SAME", True, "NONE"),      # image < kernel
    ((11, 11), 3, 1, (5, 5), (2, 2), (1, 1), "VALID", True, "NONE"),
    ((25, 5), 16, 1, (10, 4), (1, 1), (1, 1), "SAME", True, "RELU"),
    ((12, 12), 8, 1, (3, 3), (1, 1), (2, 2), "SAME", True, "NONE"),
    ((8, 8), 7, 1, (1, 1), (1, 1), (1, 1), "VALID", False, "RELU6"),
    ((10, 9), 6, 2, (3, 3), (1, 1), (1, 1), "SAME", True, "NONE"),      # multiplier 2: portable
    ((6, 7), 20, 1, (3, 3), (2, 1), (1, 1), "SAME", False, "RELU6"),
]


def _ids(c):
    return (f"{c[0][0]}x{c[0][1]}x{c[1]}-m{c[2]}-k{c[3][0]}x{c[3][1]}-s{c[4][0]}{c[4][1]}"
            f"-d{c[5][0]}-{c[6]}-{'pc' if c[7] else 'pt'}-{c[8]}")


def _case_model(case, batch=1):
    in_hw, in_c, mult, k_hw, stride, dil, padding, pc, act = case
    rng = _rng("dwdsp", case, batch)
    model, shape = _conv_model(rng, in_hw, in_c, None, k_hw, stride, dil, padding, pc, act,
                               True, batch, depthwise=True, mult=mult)
    return model, _rand_i8(rng, shape)


def _prepared(model, target=M7):
    graph = load(model)
    graph.meta["target"] = target
    graph = run_passes(graph)
    assert len(graph.nodes) == 1
    return graph, graph.nodes[0]


def _call(graph, node, x_ptr, y_ptr, keep, lib=None):
    """Call the node's kernel through its own template (argument order and all), from ``lib``
    (default: every kernel, built by tests/ckernels.py)."""
    opdef = ops.get(node.op)
    p = {k: (f"P_{k}" if isinstance(v, np.ndarray) else v) for k, v in node.params.items()}
    text = codegen.environment().get_template(opdef.template_for(node)).render(
        node=node, p=p, inp=["IN0", "IN1", "IN2"][:len(node.inputs)], out=["OUT0"],
        scratch="SCRATCH", same_buffer=False,
        tin=[graph.tensors[t] if t else None for t in node.inputs],
        tout=[graph.tensors[t] for t in node.outputs])
    fname, args = _parse_call(text)
    assert fname == node.params["kernel"], (fname, node.params["kernel"])

    def conv(a):
        if a.endswith("SCRATCH"):
            arr = np.zeros(ops.get(node.op).scratch_bytes(node, graph) // 4, np.int32)
            keep.append(arr)
            return ptr(arr)
        if a == "NULL":
            return None
        if a == "IN0":
            return x_ptr
        if a == "OUT0":
            return y_ptr
        if a.startswith("IN"):
            arr = np.ascontiguousarray(graph.tensors[node.inputs[int(a[2:])]].data)
        elif a.startswith("P_"):
            arr = np.ascontiguousarray(node.params[a[2:]])
        else:
            return ctypes.c_int32(int(a.rstrip("u")))
        keep.append(arr)
        return ptr(arr)

    getattr(lib or load_kernels(), fname)(*[conv(a) for a in args])


def _run(graph, node, x, lib=None):
    y = np.zeros(graph.tensors[node.outputs[0]].shape, np.int8)
    x = np.ascontiguousarray(x)
    _call(graph, node, ptr(x), ptr(y), [], lib)
    return y


@pytest.mark.parametrize("widen", [True, False], ids=["widened", "int8-weights"])
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_dsp_kernel_matches_tflm_and_portable(case, widen, monkeypatch):
    """Both paths of the DSP kernel: weights widened in its optional scratch (granted where
    it does not raise the arena), and read as int8."""
    model, x = _case_model(case)
    golden = run_tflm(model, [x])[0]
    assert len(np.unique(golden)) > 1, "degenerate case: constant output"
    graph, node = _prepared(model)
    if widen:
        node.params["scratch_bytes"] = node.params.get("optional_scratch_bytes", 0)
    assert node.params["kernel"] == (DSP if case[2] == 1 else PORTABLE)
    if node.params["kernel"] == DSP:
        assert (node.params["scratch_bytes"] > 0) == (widen and case[1] >= 4)
    host_graph, host_node = _prepared(model, Target())
    assert host_node.params["kernel"] == PORTABLE
    y_dsp = _run(graph, node, x).reshape(golden.shape)
    y_port = _run(host_graph, host_node, x).reshape(golden.shape)
    assert np.array_equal(y_port, golden)
    assert np.array_equal(y_dsp, golden), \
        f"{node.params['kernel']} differs from TFLM in {np.count_nonzero(y_dsp != golden)} values"


def _fast_requant_case(case, widen):
    """(input, DSP graph and node, portable graph and node) of a case with the output
    parameters of the fast requantization (a RELU output with zero point -128), the DSP node
    with its widened-weight scratch if ``widen``."""
    model, x = _case_model(case)
    graph, node = _prepared(model)
    host_graph, host_node = _prepared(model, Target())
    for n in (node, host_node):
        n.params.update(output_offset=-128, act_min=-128, act_max=127)
    if widen:
        node.params["scratch_bytes"] = node.params.get("optional_scratch_bytes", 0)
    return x, graph, node, host_graph, host_node


@pytest.mark.parametrize("widen", [True, False], ids=["widened", "int8-weights"])
@pytest.mark.parametrize("case", [c for c in CASES if c[2] == 1], ids=_ids)
def test_dsp_kernel_fast_requantization_matches_portable(case, widen):
    """The kernel's fast requantization (output zero point = act_min = -128, act_max = 127:
    SSAT, no [acc < 0] term) against the portable twin with the same output parameters
    (a RELU output with zero point -128)."""
    x, graph, node, host_graph, host_node = _fast_requant_case(case, widen)
    y_dsp, y_port = _run(graph, node, x), _run(host_graph, host_node, x)
    assert np.count_nonzero(y_port > -128) > y_port.size // 8, "degenerate case"
    assert np.array_equal(y_dsp, y_port), np.count_nonzero(y_dsp != y_port)


def test_dsp_kernel_batches():
    model, x = _case_model(CASES[1], batch=2)
    graph, node = _prepared(model)
    assert node.params["kernel"] == DSP
    golden = run_tflm(model, [x])[0]
    assert np.array_equal(_run(graph, node, x).reshape(golden.shape), golden)


def _run_overlapped(graph, node, x, delta):
    """Run with input at `base` and output at `base + delta` inside one buffer."""
    y_shape = graph.tensors[node.outputs[0]].shape
    n_in, n_out = x.size, int(np.prod(y_shape))
    lo = min(0, delta)
    hi = max(n_in, delta + n_out)
    buf = np.zeros(hi - lo + 64, np.int8)
    base = 32 - lo
    buf[base:base + n_in] = x.ravel()
    addr = buf.ctypes.data
    _call(graph, node, ctypes.c_void_p(addr + base), ctypes.c_void_p(addr + base + delta), [])
    return buf[base + delta:base + delta + n_out].reshape(y_shape).copy()


OVERLAP_CASES = [CASES[0], CASES[1], CASES[5], CASES[6], CASES[7], CASES[8], CASES[11]]


@pytest.mark.parametrize("case", OVERLAP_CASES, ids=_ids)
@pytest.mark.parametrize("target", ["dsp", "portable"])
def test_overlapping_output_at_overlap_bytes(case, target):
    """The output may start overlap_bytes(node) bytes after the input's start (or anywhere
    lower).  overlap_bytes is the raster-window bound (tinyengine/overlap.py, group=1), which
    is tight to one output pixel here: a start out_c + 1 bytes higher clobbers input the
    kernel still reads."""
    model, x = _case_model(case)
    golden = run_tflm(model, [x])[0].reshape(-1)
    graph, node = _prepared(model, M7 if target == "dsp" else Target())
    if target == "dsp" and case[2] != 1:
        pytest.skip("multiplier 2 always uses the portable kernel")
    d = ops.get(node.op).overlap_bytes(node, graph)
    assert d < x.size, "the output may not start past the input in these cases"
    for delta in (d, d // 16 * 16, d - 37):
        y = _run_overlapped(graph, node, x, delta)
        assert np.array_equal(y.reshape(-1), golden), f"delta {delta} (overlap_bytes {d})"
    out_c = graph.tensors[node.outputs[0]].shape[3]
    y = _run_overlapped(graph, node, x, d + out_c + 1)
    assert not np.array_equal(y.reshape(-1), golden), f"delta {d + out_c + 1} still correct"


def test_overlap_bytes_values():
    """Worked example: 3x3 stride 1 SAME on 9x9x8.  Pixel (oy, ox >= 1), oy >= 1, reads from
    input pixel (oy - 1, ox - 1) on and its output ends at pixel index oy*9 + ox + 1, so
    D = ((oy - 1)*9 + ox - 1)*8 - (oy*9 + ox + 1)*8 = -(9 + 2)*8 (the other pixels allow more)."""
    model, _ = _case_model(CASES[0])
    graph, node = _prepared(model)
    assert ops.get(node.op).overlap_bytes(node, graph) == -(9 + 2) * 8


# -- whole models through the pipeline -----------------------------------------------------------
LAYERS = [
    # chains of layers from one input each: (in_hw, in_c, [(k_hw, stride, padding, mult, act)])
    ((20, 20), 16, [((3, 3), 1, "SAME", 1, "RELU"), ((3, 3), 2, "SAME", 1, "NONE"),
                    ((5, 5), 1, "SAME", 1, "RELU"), ((7, 7), 2, "SAME", 1, "NONE"),
                    ((3, 3), 1, "VALID", 2, "NONE")]),
    ((13, 11), 7, [((3, 3), 2, "VALID", 1, "RELU"), ((5, 5), 2, "SAME", 1, "RELU6"),
                   ((3, 3), 1, "SAME", 2, "NONE"), ((7, 7), 1, "SAME", 1, "NONE")]),
    ((25, 5), 33, [((10, 4), 1, "SAME", 1, "RELU"), ((3, 3), 1, "SAME", 1, "NONE")]),
    ((9, 10), 1, [((5, 5), 1, "VALID", 1, "NONE"), ((3, 3), 2, "SAME", 1, "RELU6")]),
    # 42 groups x 49 taps x 8 bytes of optional scratch: too big to be free here
    ((4, 5), 170, [((7, 7), 1, "SAME", 1, "NONE")]),
]


def _dw_network(per_tensor_every=2, layers=LAYERS, tag="dw-network") -> bytes:
    rng = _rng(tag)
    mb = ModelBuilder()
    ins, outs = [], []
    n = 0
    for ci, (hw, c, chain) in enumerate(layers):
        s, zp = float(rng.uniform(0.02, 0.08)), int(rng.integers(-20, 20))
        x = mb.tensor(f"x{ci}", (1, *hw, c), "int8", scale=s, zero_point=zp)
        ins.append(x)
        for k_hw, stride, padding, mult, act in chain:
            n += 1
            out_c = c * mult
            w = _rand_i8(rng, (1, *k_hw, out_c))
            w[w == -128] = -127
            pc = n % per_tensor_every != 0
            w_s = rng.uniform(0.002, 0.02, size=out_c if pc else 1)
            wi = mb.const(f"w{n}", w, "int8", scale=w_s, zero_point=np.zeros(w_s.size, np.int64),
                          quantized_dimension=3)
            b = rng.integers(-5000, 5000, size=out_c).astype(np.int32)
            bi = mb.const(f"b{n}", b, "int32", scale=(s * w_s).astype(np.float32),
                          zero_point=np.zeros(out_c, np.int64))
            g = window_geometry(padding, hw, k_hw, (stride, stride), (1, 1))
            out_s = s * float(np.mean(w_s)) * 60.0 * np.sqrt(k_hw[0] * k_hw[1])
            # RELU with zero point -128: the kernel's fast requantization (SSAT, no [acc < 0])
            out_zp = -128 if act == "RELU" else int(rng.integers(-30, 30))
            y = mb.tensor(f"y{n}", (1, g["out_h"], g["out_w"], out_c), "int8", scale=out_s,
                          zero_point=out_zp)
            mb.op("DEPTHWISE_CONV_2D", [x, wi, bi], [y], padding=padding, stride_h=stride,
                  stride_w=stride, depth_multiplier=mult, fused_activation_function=act)
            x, hw, c, s = y, (g["out_h"], g["out_w"]), out_c, out_s
        outs.append(x)
    mb.inputs(ins)
    mb.outputs(outs)
    return mb.build()


def test_dw_network_kernel_choice(tmp_path):
    """DSP kernels where their preconditions hold; widened weights only where the optional
    scratch leaves the arena as it is."""
    from tinyengine.compiler import CompileOptions, compile_model

    path = tmp_path / "dw.tflite"
    path.write_bytes(_dw_network())
    c = compile_model(path, CompileOptions(board="stm32f746"))
    kinds = [node.params["kernel"] for node in c.graph.nodes]
    assert kinds.count(DSP) >= 10 and kinds.count(PORTABLE) == 2, kinds
    widened = [node.params.get("scratch_bytes", 0) > 0 for node in c.graph.nodes
               if node.params["kernel"] == DSP]
    assert any(widened) and not all(widened)
    for node in c.graph.nodes:
        node.params["scratch_bytes"] = 0
    assert planner.plan_graph(c.graph).arena_bytes == c.plan.arena_bytes


@pytest.mark.parametrize("board", ["host", pytest.param("stm32f746", marks=pytest.mark.qemu),
                                   pytest.param("stm32f411", marks=pytest.mark.qemu)])
def test_dw_network_bit_exact(board, tmp_path, capsys):
    """With widened weights where their scratch is free and int8 weights elsewhere (see
    test_dw_network_kernel_choice), so both paths of the DSP kernel run on the M7 and M4."""
    path = tmp_path / "dw.tflite"
    path.write_bytes(_dw_network())
    rc = main(["verify", str(path), "--board", board, "-n", "2", "-o", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "bit-exact" in out


def test_requantization_identity():
    """The DSP kernel's requantization, ((SMMULR(2*acc, m) - [acc < 0]) >> (e - 1) + 2*oo + 1)
    >> 1, equals TFLite's MultiplyByQuantizedMultiplier + oo for |acc| < 2^30, m in
    [2^30, 2^31), e in [1, 31]; without the [acc < 0] term it still does after the clamp at
    act_min = oo = -128.  Edge cases included (acc = -1 with m = 2^30, exact halves, the
    largest values)."""
    from tinyengine.quant import multiply_by_quantized_multiplier

    rng = np.random.default_rng(5)
    acc = np.concatenate([rng.integers(-(1 << 30) + 1, 1 << 30, 20000),
                          rng.integers(-5000, 5000, 20000),
                          [-1, 0, 1, (1 << 30) - 1, -(1 << 30) + 1]]).astype(np.int64)

    def smmulr(a, b):      # exact: |a * b| < 2^62
        return (a * b + (1 << 31)) >> 32

    for m in [1 << 30, (1 << 31) - 1, 1518500250, int(rng.integers(1 << 30, 1 << 31))]:
        for e in [1, 2, 3, 7, 13, 22, 31]:
            s = smmulr(2 * acc, np.int64(m))
            want = multiply_by_quantized_multiplier(acc, np.int64(m), np.int64(-e))
            for oo in (-128, 0, 77):
                ours = (((s - (acc < 0)) >> (e - 1)) + 2 * oo + 1) >> 1
                assert np.array_equal(ours, want + oo), (m, e, oo)
            fast = np.clip(((s >> (e - 1)) - 255) >> 1, -128, 127)
            assert np.array_equal(fast, np.clip(want - 128, -128, 127)), (m, e)


def _dw_constant_channels_model() -> bytes:
    """Depthwise layers with 'constant' channels (all-zero weights): one with a weight scale of
    2^-23 and a bias of ~1.7e8 (output +k), one with a zero bias, one with a negative bias."""
    rng = _rng("dw-constant")
    mb = ModelBuilder()
    s, zp, c, hw = 0.03, -128, 24, (10, 10)
    x = mb.tensor("x", (1, *hw, c), "int8", scale=s, zero_point=zp)
    first = x
    for n, (k, stride, act) in enumerate([(3, 1, "RELU6"), (5, 2, "NONE"), (3, 1, "NONE")]):
        w = _rand_i8(rng, (1, k, k, c))
        w[w == -128] = -127
        w_s = rng.uniform(0.002, 0.02, size=c).astype(np.float32)
        b = rng.integers(-5000, 5000, size=c).astype(np.int64)
        w[..., 0:3] = 0
        w_s[0] = 2.0 ** -23
        b[0] = int(round((0.4 if n != 1 else -0.3) / (s * w_s[0])))    # +-k after requant
        b[1] = 0
        b[2] = -b[0] // 3
        wi = mb.const(f"w{n}", w, "int8", scale=w_s, zero_point=np.zeros(c, np.int64),
                      quantized_dimension=3)
        bi = mb.const(f"b{n}", b.astype(np.int32), "int32", scale=(s * w_s).astype(np.float32),
                      zero_point=np.zeros(c, np.int64))
        g = window_geometry("SAME", hw, (k, k), (stride, stride), (1, 1))
        out_s = s * 0.01 * 60.0 * k
        out_zp = -128 if act == "RELU6" else int(rng.integers(-30, 30))
        y = mb.tensor(f"y{n}", (1, g["out_h"], g["out_w"], c), "int8", scale=out_s,
                      zero_point=out_zp)
        mb.op("DEPTHWISE_CONV_2D", [x, wi, bi], [y], padding="SAME", stride_h=stride,
              stride_w=stride, depth_multiplier=1, fused_activation_function=act)
        x, hw, s = y, (g["out_h"], g["out_w"]), out_s
    mb.inputs([first])
    mb.outputs([x])
    return mb.build()


@pytest.mark.parametrize("board", ["host", pytest.param("stm32f746", marks=pytest.mark.qemu)])
def test_constant_channels_keep_the_dsp_kernel_and_narrow_tables(board, tmp_path, capsys):
    """All-zero-weight channels (huge bias, or a scale so small that TFLite's multiplier is 0)
    are folded to another channel's (m, s) and a small accumulator start with the same output:
    the layer keeps the DSP kernel and a table that bit-packs narrowly; bit-exact with TFLM."""
    from tinyengine.compiler import CompileOptions, compile_model
    from tinyengine.ops import chanpack

    path = tmp_path / "dwc.tflite"
    path.write_bytes(_dw_constant_channels_model())
    golden = run_tflm(path.read_bytes(), [np.zeros((1, 10, 10, 24), np.int8)])[0]
    assert len(np.unique(golden[..., 0])) == 1           # the constant channel ...
    assert len(np.unique(golden[..., 3:])) > 10          # ... among live ones
    c = compile_model(path, CompileOptions(board="stm32f746"))
    for node in c.graph.nodes:
        assert node.params["kernel"] == DSP, node.name
        cp = ops.get(node.op).channel_params(node)
        assert chanpack.widths(cp)[0] <= 20, (node.name, chanpack.widths(cp))   # not ~28
    rc = main(["verify", str(path), "--board", board, "-n", "300", "-o", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "bit-exact" in out


def _dw_large_multiplier_model() -> bytes:
    """Depthwise layers (fast requantization: RELU6 with zero point -128; general: NONE) whose first
    channels have a requantization multiplier in [0.25, 0.5), TFLite's shift -1: a channel of large
    folded weights, as batch norm of a small running variance gives (small int8 weights keep their
    outputs off the clamp)."""
    rng = _rng("dw-large-multiplier")
    mb = ModelBuilder()
    s, c, hw = 0.03, 12, (8, 8)
    x = mb.tensor("x", (1, *hw, c), "int8", scale=s, zero_point=0)
    first = x
    for n, act in enumerate(["RELU6", "NONE"]):
        w = _rand_i8(rng, (1, 3, 3, c))
        w[w == -128] = -127
        w[..., :3] = rng.integers(-2, 3, size=(1, 3, 3, 3))
        out_s = s * 1.8
        w_s = rng.uniform(0.002, 0.02, size=c)
        w_s[:3] = np.array([0.26, 0.37, 0.49]) * out_s / s        # the multipliers
        b = rng.integers(-300, 300, size=c).astype(np.int32)
        wi = mb.const(f"w{n}", w, "int8", scale=w_s.astype(np.float32), zero_point=np.zeros(c, np.int64),
                      quantized_dimension=3)
        bi = mb.const(f"b{n}", b, "int32", scale=(s * w_s).astype(np.float32), zero_point=np.zeros(c, np.int64))
        out_zp = -128 if act == "RELU6" else 3
        y = mb.tensor(f"y{n}", (1, *hw, c), "int8", scale=out_s, zero_point=out_zp)
        mb.op("DEPTHWISE_CONV_2D", [x, wi, bi], [y], padding="SAME", stride_h=1, stride_w=1,
              depth_multiplier=1, fused_activation_function=act)
        x, s = y, out_s
    mb.inputs([first])
    mb.outputs([x])
    return mb.build()


@pytest.mark.parametrize("board", ["host", pytest.param("stm32f746", marks=pytest.mark.qemu),
                                   pytest.param("stm32f411", marks=pytest.mark.qemu)])
def test_multipliers_up_to_one_half_keep_the_dsp_kernel(board, tmp_path, capsys):
    """A channel whose multiplier is in [0.25, 0.5) (shift -1: a right shift e = 1) keeps the DSP
    kernel, in both requantizations; bit-exact with TFLM. (Trained depthwise weights give such
    channels: a 1x1 map's channel of folded weight 33 between two ReLU6 ranges sent a tinynas
    winner's 384-channel layer to the portable kernel, 40 times slower.)"""
    from tinyengine.compiler import CompileOptions, compile_model

    path = tmp_path / "dwm.tflite"
    path.write_bytes(_dw_large_multiplier_model())
    c = compile_model(path, CompileOptions(board="stm32f746"))
    for node in c.graph.nodes:
        assert node.params["kernel"] == DSP, node.name
        assert list(node.params["out_shift"][:3]) == [-1, -1, -1], node.params["out_shift"]
    golden = run_tflm(path.read_bytes(), [_rand_i8(_rng("dwm-x"), (1, 8, 8, 12))])[0]
    assert all(len(np.unique(golden[..., ch])) > 5 for ch in range(3))     # not clamped flat
    rc = main(["verify", str(path), "--board", board, "-n", "300", "-o", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "bit-exact" in out


# -- optional fast paths (TE_DW_DSP_* in te_depthwise_conv_2d_s8_dsp.c) ----------------------------
SWITCHES_OFF = {
    "all": ("TE_DW_DSP_3X3_WIDE", "TE_DW_DSP_3X3_INT8", "TE_DW_DSP_RUN_WIDE"),
    "3x3-wide": ("TE_DW_DSP_3X3_WIDE",),       # its pixels go to te_dw_run_wide
    "run-wide": ("TE_DW_DSP_RUN_WIDE",),       # border pixels of widened layers: int8 weights
}
LOOP_OF = {"TE_DW_DSP_3X3_WIDE": "te_dw_run_3x3_wide", "TE_DW_DSP_3X3_INT8": "te_dw_run_3x3_int8",
           "TE_DW_DSP_RUN_WIDE": "te_dw_run_wide"}


def test_dsp_paths_follow_the_kernel_dispatch():
    """dsp_paths: which optional loops a call can take (worked examples of the kernel's
    dispatch: fast requantization only; widened weights only with the scratch and in_c >= 4;
    3x3 loops only where a window lies inside the image; te_dw_run_wide for the others)."""
    from tinyengine.ops.depthwise_conv import SWITCHES, dsp_paths

    def paths(**kw):
        p = dict(in_h=10, in_w=10, in_c=8, out_h=10, out_w=10, k_h=3, k_w=3, stride_h=1,
                 stride_w=1, dil_h=1, dil_w=1, pad_top=1, pad_left=1, act_min=-128,
                 act_max=127, output_offset=-128, scratch_bytes=8 * 2 * 9)
        p.update(kw)
        got = dsp_paths(p)
        assert set(got) == set(SWITCHES)
        return {k[len("TE_DW_DSP_"):] for k, v in got.items() if v}

    assert paths() == {"3X3_WIDE", "RUN_WIDE"}                    # SAME: borders too
    assert paths(scratch_bytes=0) == {"3X3_INT8"}
    assert paths(in_c=3, scratch_bytes=0) == {"3X3_INT8"}
    assert paths(out_h=8, out_w=8, pad_top=0, pad_left=0) == {"3X3_WIDE"}      # VALID
    assert paths(out_h=8, out_w=9, pad_top=0, pad_left=0) == {"3X3_WIDE", "RUN_WIDE"}
    assert paths(output_offset=-3) == set()                       # general requantization
    assert paths(act_max=100) == set()
    assert paths(k_h=5, k_w=5, pad_top=2, pad_left=2) == {"RUN_WIDE"}
    assert paths(k_h=5, k_w=5, scratch_bytes=0) == set()
    # 3x3 on a 2x2 image: no window inside, every pixel at the border
    assert paths(in_h=2, in_w=2, out_h=2, out_w=2) == {"RUN_WIDE"}
    assert paths(in_h=2, in_w=2, out_h=2, out_w=2, scratch_bytes=0) == set()


@functools.lru_cache(maxsize=None)
def _dsp_lib_without(off: tuple) -> ctypes.CDLL:
    """te_depthwise_conv_2d_s8_dsp built natively with the loops ``off`` left out."""
    out = Path(tempfile.mkdtemp(prefix="te_dw_switch_")) / "libtedw.so"
    src = [str(KERNELS / f) for f in ("te_depthwise_conv_2d_s8_dsp.c", "te_conv_args.c",
                                      "te_unpack_channels.c")]
    subprocess.run(["gcc", *CFLAGS, *[f"-D{s}=0" for s in off], "-I", str(KERNELS), "-o",
                    str(out), *src], check=True, capture_output=True, text=True)
    return ctypes.CDLL(str(out))


@pytest.mark.parametrize("widen", [True, False], ids=["widened", "int8-weights"])
@pytest.mark.parametrize("case", [c for c in CASES if c[2] == 1], ids=_ids)
def test_dsp_kernel_without_fast_paths_matches_portable(case, widen):
    """With optional loops left out (the pixels go to te_dw_run_wide / te_dw_run_int8) the
    kernel still equals its portable twin, with the fast requantization that those loops
    need."""
    x, graph, node, host_graph, host_node = _fast_requant_case(case, widen)
    y_port = _run(host_graph, host_node, x)
    for name, off in SWITCHES_OFF.items():
        y = _run(graph, node, x, _dsp_lib_without(off))
        assert np.array_equal(y, y_port), (name, np.count_nonzero(y != y_port))


# chains whose calls take te_dw_run_3x3_int8 but neither widened-weight loop: full 3x3 layers
# whose optional scratch is not free (64 channels on 6x6) or impossible (3 channels)
INT8_ONLY_LAYERS = [
    ((6, 6), 64, [((3, 3), 1, "SAME", 1, "RELU"), ((3, 3), 2, "SAME", 1, "NONE"),
                  ((5, 5), 1, "SAME", 1, "RELU")]),
    ((7, 8), 3, [((3, 3), 1, "SAME", 1, "RELU"), ((5, 5), 1, "SAME", 1, "RELU6")]),
]


def _m7_project(tmp_path, model: bytes, name: str):
    from tinyengine.compiler import CompileOptions, compile_model, write_project

    path = tmp_path / f"{name}.tflite"
    path.write_bytes(model)
    c = compile_model(path, CompileOptions(board="stm32f746"))
    out = tmp_path / name
    write_project(c, out)
    rng = np.random.default_rng(7)
    records = [[rng.integers(-128, 128, size=c.graph.tensors[t].shape).astype(np.int8)
                for t in c.graph.inputs] for _ in range(2)]
    return c, out, records, run_tflm_many(path.read_bytes(), records)


def _makefile_switches(out) -> list:
    """The depthwise kernel's switches the Makefile sets to 0."""
    line = re.search(r"^KERNEL_SWITCHES :=(.*)$", (out / "Makefile").read_text(), re.M)
    return sorted(re.findall(r"-D(TE_DW_\w+)=0", line.group(1)))


def _run_with_switches(c, out, records, golden, off=None):
    """Build with the Makefile's switches (off=None) or with exactly ``off`` left out, run the
    records under QEMU, require equality with TFLM; the instructions and the kernel's loops
    linked."""
    if off is not None:
        mk = out / "Makefile"
        mk.write_text(re.sub(r"^KERNEL_SWITCHES :=.*$",
                             "KERNEL_SWITCHES :=" + "".join(f" -D{s}=0" for s in off),
                             mk.read_text(), flags=re.M))
        shutil.rmtree(out / "build", ignore_errors=True)
    hio = host_io_of(c.graph)
    res = runner.run(out, [hio.to_device(r) for r in records], output_specs(c.graph))
    for r, (g_rec, y_rec) in enumerate(zip(golden, res.outputs)):
        for i, (g, y) in enumerate(zip(g_rec, hio.from_device(y_rec))):
            assert np.array_equal(y, np.asarray(g).reshape(y.shape)), \
                f"switches off {off}: record {r} output {i} differs from TFLM"
    nm = subprocess.run(["arm-none-eabi-nm", str(out / "model.elf")], capture_output=True,
                        text=True, check=True).stdout
    return res.instructions, set(re.findall(r"\b(te_dw_run_\w+)", nm))


@pytest.mark.qemu
def test_project_leaves_out_the_loops_no_call_takes(tmp_path):
    """A model whose depthwise calls take the int8-weight 3x3 loop but neither widened-weight
    loop: its Makefile leaves those two out, the firmware links neither, stays bit-exact with
    TFLM and runs no more instructions than with every loop compiled in."""
    c, out, records, golden = _m7_project(tmp_path, _dw_network(layers=INT8_ONLY_LAYERS,
                                                                tag="dw-int8-only"), "int8only")
    assert sum(n.params.get("kernel") == DSP for n in c.graph.nodes) == 5
    assert _makefile_switches(out) == ["TE_DW_DSP_3X3_WIDE", "TE_DW_DSP_RUN_WIDE"]
    ins, loops = _run_with_switches(c, out, records, golden)
    assert loops == {"te_dw_run_3x3_int8", "te_dw_run_int8"}, loops
    text = runner.size(out)["text"]
    ins_all, loops_all = _run_with_switches(c, out, records, golden, off=())
    assert loops_all == {"te_dw_run_3x3_int8", "te_dw_run_3x3_wide", "te_dw_run_int8",
                         "te_dw_run_wide"}, loops_all
    assert ins <= ins_all and text + 1000 < runner.size(out)["text"], (ins, ins_all, text)


@pytest.mark.qemu
def test_loops_left_out_on_purpose_stay_bit_exact(tmp_path):
    """_dw_network's calls take the widened-weight loops; its firmware built with them (and
    the 3x3 int8-weight one) left out on purpose still equals TFLM: their pixels go to
    te_dw_run_wide or te_dw_run_int8, at a cost in instructions only."""
    c, out, records, golden = _m7_project(tmp_path, _dw_network(), "dwnet")
    ins, loops = _run_with_switches(c, out, records, golden)
    assert {"te_dw_run_3x3_wide", "te_dw_run_wide"} <= loops, loops
    for name, off in SWITCHES_OFF.items():
        ins_off, loops_off = _run_with_switches(c, out, records, golden, off=off)
        kept = {v for k, v in LOOP_OF.items() if k not in off}
        assert loops_off == kept | {"te_dw_run_int8"}, (name, loops_off)
        assert ins_off > ins, name
