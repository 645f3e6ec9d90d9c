"""Hostile model files: damaged flatbuffers, absurd numbers and names that try to break the C.

* Mutation test: seeded byte flips, truncations and hostile int32 / float32 values written into
  the metadata of small models (the shared kws / ad01 models and a builder model); every
  mutated file must compile or end with a one-line error and exit code 2 -- never an "internal
  error", a traceback, a crash or a hang.
* Load-time validation: NaN / infinite / zero / absurd scales, zero points outside the type,
  tensor / buffer / opcode indices out of range, shapes that overflow: rejected naming the file,
  the tensor or node and what is wrong.
* The reference (TFLite Micro) failing to load a file TinyEngine accepts: `verify` says so.
* Hostile tensor names (comment delimiters, trigraphs, backslash-newline, quotes, non-ASCII,
  very long, colliding) build with -Werror and run bit-exact with TFLite Micro on the host and
  on QEMU.
"""
import contextlib
import io
import struct

import numpy as np
import pytest
import tflite

from tests.test_float_edges import edge_model
from tests.tflite_builder import ModelBuilder
from tinyengine import cli


def run_cli(*argv):
    """tinyengine in-process: (exit code, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = cli.main([str(a) for a in argv])
    return rc, err.getvalue()


def assert_clean_error(rc, err, *needles):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("tinyengine: error: "), err
    assert "internal error" not in err and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


# -- mutation test ------------------------------------------------------------------------------
HOSTILE_INT32 = [0, -1, -2, 1, 2**31 - 1, -2**31, 0xFFFF, 0x10000, 255, 256, 1 << 24]
HOSTILE_FLOAT = [float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e38, 1e-45, -1.0, 3e-39]


def _metadata_offsets(data: bytes) -> np.ndarray:
    """Byte offsets outside the large constant buffers (weights): where a mutation hits the
    model's structure, quantization, shapes and indices rather than a weight value."""
    m = tflite.Model.GetRootAsModel(data, 0)
    keep = np.ones(len(data), bool)
    for i in range(m.BuffersLength()):
        b = m.Buffers(i)
        if b.DataLength() > 64:
            start = b._tab.Vector(b._tab.Offset(4))
            keep[start:start + b.DataLength()] = False
    return np.nonzero(keep)[0]


def mutate(data: bytes, rng: np.random.Generator, where: np.ndarray) -> tuple:
    d = bytearray(data)
    kind = ("flip", "truncate", "int32", "float32")[int(rng.integers(4))]
    if kind == "flip":
        for _ in range(int(rng.integers(1, 9))):
            d[int(where[rng.integers(len(where))])] ^= 1 << int(rng.integers(8))
        return bytes(d), kind
    if kind == "truncate":
        return bytes(d[:int(rng.integers(0, len(d)))]), kind
    pos = min(int(where[rng.integers(len(where))]) & ~3, len(d) - 4)
    if kind == "int32":
        v = (HOSTILE_INT32[int(rng.integers(len(HOSTILE_INT32)))] if rng.random() < 0.8
             else int(rng.integers(-2**31, 2**31)))
        d[pos:pos + 4] = struct.pack("<i", v)
    else:
        d[pos:pos + 4] = struct.pack("<f", HOSTILE_FLOAT[int(rng.integers(len(HOSTILE_FLOAT)))])
    return bytes(d), kind


def _small_builder_model() -> bytes:
    """int8 CONV_2D -> AVERAGE_POOL_2D -> RESHAPE -> FULLY_CONNECTED -> SOFTMAX: every option
    table and quantization kind (per-channel, per-tensor, int32 bias) in a few hundred bytes."""
    rng = np.random.default_rng(3)
    mb = ModelBuilder()
    x = mb.tensor("x", (1, 6, 6, 2), "int8", scale=0.05, zero_point=-3)
    w = mb.const("w", rng.integers(-127, 128, (4, 3, 3, 2)), "int8", scale=np.full(4, 0.01),
                 zero_point=np.zeros(4, np.int64), quantized_dimension=0)
    b = mb.const("b", rng.integers(-500, 500, 4), "int32", scale=np.full(4, 5e-4),
                 zero_point=np.zeros(4, np.int64))
    c = mb.tensor("c", (1, 6, 6, 4), "int8", scale=0.08, zero_point=1)
    mb.op("CONV_2D", [x, w, b], [c], padding="SAME", stride_h=1, stride_w=1,
          fused_activation_function="RELU")
    p = mb.tensor("p", (1, 3, 3, 4), "int8", scale=0.08, zero_point=1)
    mb.op("AVERAGE_POOL_2D", [c], [p], padding="VALID", stride_h=2, stride_w=2, filter_height=2,
          filter_width=2)
    s = mb.const("shape", np.array([1, 36], np.int32), "int32")
    r = mb.tensor("r", (1, 36), "int8", scale=0.08, zero_point=1)
    mb.op("RESHAPE", [p, s], [r])
    fw = mb.const("fw", rng.integers(-127, 128, (5, 36)), "int8", scale=0.02, zero_point=0)
    f = mb.tensor("f", (1, 5), "int8", scale=0.3, zero_point=-2)
    mb.op("FULLY_CONNECTED", [r, fw, -1], [f])
    y = mb.tensor("y", (1, 5), "int8", scale=1 / 256, zero_point=-128)
    mb.op("SOFTMAX", [f], [y], beta=1.0)
    mb.inputs([x])
    mb.outputs([y])
    return mb.build()


MUTATION_SOURCES = {"kws_ref_model": 100, "ad01_int8": 60, "builder": 80, "float_edges": 60}


def test_mutated_models_compile_or_fail_cleanly(tmp_path, models_dir):
    """Seeded: 300 mutated files; each compiles (no build) or fails with exit 2 and one line."""
    sources = {"kws_ref_model": (models_dir / "mlperf_tiny" / "kws_ref_model.tflite").read_bytes(),
               "ad01_int8": (models_dir / "mlperf_tiny" / "ad01_int8.tflite").read_bytes(),
               "builder": _small_builder_model(),
               "float_edges": edge_model("SOFTMAX", head=True, tail_add=True)}
    rng = np.random.default_rng(20261207)
    outcome = {0: 0, 2: 0}
    failures = []
    for name, count in MUTATION_SOURCES.items():
        where = _metadata_offsets(sources[name])
        for k in range(count):
            data, kind = mutate(sources[name], rng, where)
            path = tmp_path / f"{name}_{k}.tflite"
            path.write_bytes(data)
            rc, err = run_cli("compile", path, "--board", "host", "-o", tmp_path / "out", "--no-build")
            lines = [ln for ln in err.splitlines() if ln.strip()]
            ok = rc == 0 or (rc == 2 and len(lines) == 1 and lines[0].startswith("tinyengine: error: ")
                             and "internal error" not in err and "Traceback" not in err)
            if not ok:
                failures.append(f"{path.name} ({kind}): exit {rc}: {err.strip()[:300]}")
            elif rc == 2:
                assert path.name in lines[0], lines[0]      # the message names the file
            outcome[rc] = outcome.get(rc, 0) + 1
            path.unlink()
    assert not failures, "\n".join(failures)
    # the mutations reach both outcomes (a generator that only breaks the header tests nothing)
    assert outcome[0] >= 30 and outcome[2] >= 100, outcome


# -- load-time validation -----------------------------------------------------------------------
def _fc_model(in_scale=0.05, in_zp=0, w_scale=0.01, out_scale=0.2, out_zp=0, names=("x", "w", "y"),
              in_shape=(1, 8), out_f=4) -> ModelBuilder:
    rng = np.random.default_rng(0)
    mb = ModelBuilder()
    x = mb.tensor(names[0], in_shape, "int8", scale=in_scale, zero_point=in_zp)
    w = mb.const(names[1], rng.integers(-127, 128, (out_f, in_shape[-1])), "int8", scale=w_scale,
                 zero_point=0)
    y = mb.tensor(names[2], (in_shape[0], out_f), "int8", scale=out_scale, zero_point=out_zp)
    mb.op("FULLY_CONNECTED", [x, w, -1], [y])
    mb.inputs([x])
    mb.outputs([y])
    return mb


@pytest.mark.parametrize("kwargs, needles", [
    (dict(in_scale=float("nan")), ["tensor 'x'", "scale nan", "not a finite number"]),
    (dict(out_scale=float("inf")), ["tensor 'y'", "scale inf", "not a finite number"]),
    (dict(w_scale=float("-inf")), ["tensor 'w'", "not a finite number"]),
    (dict(in_scale=0.0), ["tensor 'x'", "scale 0", "activation's scale"]),
    (dict(out_scale=-0.5), ["tensor 'y'", "scale -0.5", "activation's scale"]),
    (dict(in_scale=1e-45), ["tensor 'x'", "activation's scale"]),
    (dict(out_scale=3e38), ["tensor 'y'", "activation's scale"]),
    (dict(in_zp=200), ["tensor 'x'", "zero point 200", "int8 range"]),
    (dict(out_zp=-129), ["tensor 'y'", "zero point -129", "int8 range"]),
    (dict(in_shape=(65536, 65536)), ["tensor 'x'", "4294967296 elements"]),
    (dict(w_scale=np.full(3, 0.01)), ["tensor 'w'", "3 per-channel scales for 4 channels"]),
], ids=["nan", "inf", "weights-inf", "zero", "negative-activation", "denormal", "huge",
        "zp-high", "zp-low", "overflow", "channels"])
def test_validation_rejects_absurd_quantization_and_shapes(tmp_path, kwargs, needles):
    path = tmp_path / "bad.tflite"
    path.write_bytes(_fc_model(**kwargs).build())
    rc, err = run_cli("compile", path, "--board", "host", "-o", tmp_path / "o", "--no-build")
    assert_clean_error(rc, err, "bad.tflite", *needles)


def _patched(mb: ModelBuilder, edit) -> bytes:
    """The builder's model with one field rewritten in place (edit(model) -> (offset, bytes))."""
    data = bytearray(mb.build() if isinstance(mb, ModelBuilder) else mb())
    pos, raw = edit(tflite.Model.GetRootAsModel(bytes(data), 0))
    data[pos:pos + len(raw)] = raw
    return bytes(data)


def _vector_start(table, slot: int) -> int:
    return table._tab.Vector(table._tab.Offset(slot))


@pytest.mark.parametrize("what, edit, needles", [
    ("op input index", lambda m: (_vector_start(m.Subgraphs(0).Operators(0), 6), struct.pack("<i", 7)),
     ["node 'fully_connected_0' (FULLY_CONNECTED) input 0 refers to tensor 7", "has 3"]),
    ("negative index", lambda m: (_vector_start(m.Subgraphs(0).Operators(0), 8), struct.pack("<i", -5)),
     ["output 0 refers to tensor -5"]),
    ("graph input", lambda m: (_vector_start(m.Subgraphs(0), 6), struct.pack("<i", 99)),
     ["model input 0 refers to tensor 99"]),
], ids=["op-input", "negative-output", "graph-input"])
def test_validation_rejects_bad_indices(tmp_path, what, edit, needles):
    path = tmp_path / "bad.tflite"
    path.write_bytes(_patched(_fc_model(), edit))
    rc, err = run_cli("compile", path, "--board", "host", "-o", tmp_path / "o", "--no-build")
    line = assert_clean_error(rc, err, "bad.tflite")
    for n in needles:
        assert n in line, line


def test_validation_rejects_bad_buffer_and_opcode_index(tmp_path):
    def buffer_index(m):
        t = m.Subgraphs(0).Tensors(1)
        return t._tab.Pos + t._tab.Offset(8), struct.pack("<I", 1000)

    def opcode_index(m):      # (operator 0's index, 0, is the default: not stored)
        op = m.Subgraphs(0).Operators(1)
        return op._tab.Pos + op._tab.Offset(4), struct.pack("<I", 9)

    for mb, edit, needle in (
            (_fc_model(), buffer_index, "tensor 'w' refers to buffer 1000"),
            (_small_builder_model, opcode_index, "operator 1 refers to operator code 9, the model has 5")):
        path = tmp_path / "bad.tflite"
        path.write_bytes(_patched(mb, edit))
        rc, err = run_cli("compile", path, "--board", "host", "-o", tmp_path / "o", "--no-build")
        assert_clean_error(rc, err, "bad.tflite", needle)


def test_pass_errors_name_the_file(tmp_path):
    """An error found by an op's check (after loading) also names the file."""
    mb = _fc_model(names=("x", "w", "y"))
    mb._tensors[1]["zero_point"] = 3          # asymmetric int8 weights: TFLM requires zero
    path = tmp_path / "asym.tflite"
    path.write_bytes(mb.build())
    rc, err = run_cli("compile", path, "--board", "host", "-o", tmp_path / "o", "--no-build")
    assert_clean_error(rc, err, "asym.tflite", "fully_connected_0")


def test_verify_says_when_the_reference_cannot_load_the_model(tmp_path, models_dir):
    """A shape-signature vector whose length runs past the file: TinyEngine does not read it
    and compiles the model, TFLite Micro's loader fails; verify says so (exit 2)."""
    data = bytearray((models_dir / "mlperf_tiny" / "kws_ref_model.tflite").read_bytes())
    model = tflite.Model.GetRootAsModel(bytes(data), 0)
    sg = model.Subgraphs(0)
    t = next(sg.Tensors(i) for i in range(sg.TensorsLength()) if sg.Tensors(i).ShapeSignatureLength())
    start = _vector_start(t, 18)       # Tensor.shape_signature
    data[start - 4:start] = struct.pack("<I", 0x7FFFFFF)
    path = tmp_path / "bad_signature.tflite"
    path.write_bytes(bytes(data))
    rc, err = run_cli("compile", path, "--board", "host", "-o", tmp_path / "c", "--no-build")
    assert rc == 0, err
    rc, err = run_cli("verify", path, "--board", "host", "-n", "1", "-o", tmp_path / "v")
    assert_clean_error(rc, err, "bad_signature.tflite", "TensorFlow Lite Micro",
                       "could not load", "nothing to verify against")


# -- hostile names ------------------------------------------------------------------------------
HOSTILE_NAMES = [
    "in/*put",                       # opens a comment inside a comment (-Werror=comment)
    "*/ int oops; /*",               # closes the comment
    "w // line comment",
    "b\\\nsplice\\",                 # backslash-newline, and a trailing backslash
    "h??/",                          # a trigraph for backslash
    "q\"uo'te\"",
    "n\u00e9on \u2713 \u4e2d",       # non-ASCII
    "x" * 5000,                      # very long
    "a/*b",                          # these two collide once made safe
    "a/ *b",
    "dup", "dup", "dup#11",          # duplicate names, and one the renaming would take
]


def _hostile_model() -> bytes:
    """x -> FC -> ADD (constant) -> FC -> SOFTMAX and RESHAPE -> SOFTMAX / RESHAPE -> RESHAPE,
    every tensor (constants too) named by HOSTILE_NAMES."""
    rng = np.random.default_rng(5)
    n = iter(HOSTILE_NAMES)
    mb = ModelBuilder()
    x = mb.tensor(next(n), (1, 12), "int8", scale=0.05, zero_point=-2)
    w = mb.const(next(n), rng.integers(-127, 128, (10, 12)), "int8", scale=0.01, zero_point=0)
    b = mb.const(next(n), rng.integers(-300, 300, 10), "int32", scale=5e-4, zero_point=0)
    h = mb.tensor(next(n), (1, 10), "int8", scale=0.1, zero_point=3)
    mb.op("FULLY_CONNECTED", [x, w, b], [h], fused_activation_function="RELU")
    c = mb.const(next(n), rng.integers(-128, 128, (1, 10)), "int8", scale=0.07, zero_point=-1)
    s = mb.tensor(next(n), (1, 10), "int8", scale=0.15, zero_point=0)
    mb.op("ADD", [h, c], [s])
    w2 = mb.const(next(n), rng.integers(-127, 128, (6, 10)), "int8", scale=0.02, zero_point=0)
    f = mb.tensor(next(n), (1, 6), "int8", scale=0.25, zero_point=1)
    mb.op("FULLY_CONNECTED", [s, w2, -1], [f])
    y1 = mb.tensor(next(n), (1, 6), "int8", scale=1 / 256, zero_point=-128)
    mb.op("SOFTMAX", [f], [y1], beta=1.0)
    shape = mb.const("shape", np.array([1, 6], np.int32), "int32")
    d1 = mb.tensor(next(n), (1, 6), "int8", scale=0.25, zero_point=1)
    mb.op("RESHAPE", [f, shape], [d1])
    d2 = mb.tensor(next(n), (1, 6), "int8", scale=1 / 256, zero_point=-128)
    mb.op("SOFTMAX", [d1], [d2], beta=0.5)
    d3 = mb.tensor(next(n), (1, 6), "int8", scale=0.25, zero_point=1)
    mb.op("RESHAPE", [d1, shape], [d3])
    d4 = mb.tensor(next(n), (1, 6), "int8", scale=0.25, zero_point=1)
    mb.op("RESHAPE", [d3, shape], [d4])
    mb.inputs([x])
    mb.outputs([y1, d2, d4])
    return mb.build()


@pytest.mark.parametrize("board", ["host", pytest.param("stm32f746", marks=pytest.mark.qemu)])
def test_hostile_names_build_and_run(tmp_path, board):
    """Every name reaches the C only as a safe comment or string: the project builds with
    -Wall -Wextra -Werror and equals TFLite Micro (verify, 20 random inputs)."""
    path = tmp_path / "we*ird??\\ na\nme.tflite"      # the file name reaches comments too
    path.write_bytes(_hostile_model())
    rc, err = run_cli("verify", path, "--board", board, "-n", 20, "-o", tmp_path / "out")
    assert rc == 0, err
    model_c = (tmp_path / "out" / "model.c").read_text()
    weights_c = (tmp_path / "out" / "weights.c").read_text()
    assert "in/ *put -> b<backslash> splice<backslash> */" in model_c
    assert "model: we*ird?-?<backslash> na me.tflite" in model_c
    assert "/* * / int oops; / * */" in weights_c and "/* h?-?/ */" in weights_c
    assert "/* n<U+00E9>on <U+2713> <U+4E2D> */" in weights_c
    assert "x" * 400 + "..." in model_c and "x" * 401 not in model_c
