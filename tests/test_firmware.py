"""Firmware runtime, generated-project build files and the Python runner, on a hand-made model.

The fixture model follows the generated model.h / model.c contract (te_io_t, te_inputs,
te_outputs, te_invoke over a static arena) with arithmetic simple enough to check exactly in NumPy:
    out0 = in0 + 1 (int8, wrapping)   out1 = [sum(in0), sum(in1)] (int32)
    out2 = [sum(in0) / 10 * 0.5] (float32, exercises the FPU)
Tests marked `qemu` need arm-none-eabi-gcc and qemu-system-arm (installed by `make test`).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import textwrap

import numpy as np
import pytest

from tinyengine import runner
from tinyengine.boards import BOARDS, UnknownBoardError, get_board
from tinyengine.codegen import KERNEL_DIR
from tinyengine.project import emit_project

HAVE_GCC = shutil.which("gcc") is not None and shutil.which("make") is not None

needs_gcc = pytest.mark.skipif(not HAVE_GCC, reason="host gcc/make not installed")
# Tests marked `qemu` are skipped by conftest.py when arm-none-eabi-gcc / qemu-system-arm are missing
# (and fail in CI, where `make test` installs them).

STAMP = {"version": "test", "model": "fixture", "model_sha256": "0" * 64, "board": "", "options": ""}

MODEL_H = """\
#ifndef TE_MODEL_H
#define TE_MODEL_H
#include <stdint.h>
typedef struct {
    void *data;
    uint32_t bytes;
    const char *name;
    uint8_t dtype; /* TE_DTYPE_* */
} te_io_t;
#define TE_DTYPE_INT8 0
#define TE_DTYPE_UINT8 1
#define TE_DTYPE_INT16 2
#define TE_DTYPE_INT32 3
#define TE_DTYPE_FLOAT32 4
#define TE_DTYPE_INT64 5
#define TE_NUM_INPUTS 2
#define TE_NUM_OUTPUTS 3
#define TE_ARENA_BYTES {arena}
extern const te_io_t te_inputs[TE_NUM_INPUTS];
extern const te_io_t te_outputs[TE_NUM_OUTPUTS];
void te_invoke(void);
#endif
"""

MODEL_C = """\
#include <stdint.h>
#include <string.h>
#include "model.h"
static uint8_t te_arena[TE_ARENA_BYTES] __attribute__((aligned(16)));
const te_io_t te_inputs[TE_NUM_INPUTS] = {{
    {{(void *)(te_arena + 0), 10u, "a", TE_DTYPE_INT8}},
    {{(void *)(te_arena + 16), 6u, "b", TE_DTYPE_INT8}},
}};
const te_io_t te_outputs[TE_NUM_OUTPUTS] = {{
    {{(void *)(te_arena + 32), 10u, "a_plus_1", TE_DTYPE_INT8}},
    {{(void *)(te_arena + 48), 8u, "sums", TE_DTYPE_INT32}},
    {{(void *)(te_arena + 56), 4u, "mean", TE_DTYPE_FLOAT32}},
}};
void te_invoke(void)
{{
{body}
}}
"""

BODY_ARITH = """\
    const int8_t *a = (const int8_t *)te_inputs[0].data;
    const int8_t *b = (const int8_t *)te_inputs[1].data;
    int8_t *y = (int8_t *)te_outputs[0].data;
    int32_t s[2] = {0, 0};
    for (int i = 0; i < 10; ++i) {
        y[i] = (int8_t)(uint8_t)((uint8_t)a[i] + 1u);
        s[0] += a[i];
    }
    for (int i = 0; i < 6; ++i) {
        s[1] += b[i];
    }
    memcpy(te_outputs[1].data, s, sizeof(s));
    const float mean = (float)s[0] / 10.0f * 0.5f;
    memcpy(te_outputs[2].data, &mean, sizeof(mean));
"""

# A loop of exactly 2 * n instructions (subs + bne), for the instruction counter.
BODY_LOOP = """\
    uint32_t n = {n}u;
    __asm__ volatile("1: subs %0, %0, #1\\n\\tbne 1b" : "+r"(n) : : "cc");
"""

OUTPUT_SPECS = [((10,), np.int8), ((2,), np.int32), ((1,), np.float32)]


def model_files(arena=64, body=BODY_ARITH, default_input=None) -> dict:
    files = {"model.h": MODEL_H.replace("{arena}", str(arena)), "model.c": MODEL_C.format(body=body)}
    if default_input is not None:
        values = ", ".join(f"{v}u" for v in default_input)
        files["input_data.c"] = textwrap.dedent(f"""\
            #include "te_default_input.h"
            const uint8_t te_default_input[{len(default_input)}] = {{{values}}};
            const uint32_t te_default_input_bytes = {len(default_input)}u;
            """)
    return files


def expected(a: np.ndarray, b: np.ndarray) -> list:
    s0, s1 = int(a.astype(np.int32).sum()), int(b.astype(np.int32).sum())
    mean = np.float32(s0) / np.float32(10.0) * np.float32(0.5)
    return [(a.astype(np.int16) + 1).astype(np.uint8).view(np.int8), np.array([s0, s1], np.int32),
            np.array([mean], np.float32)]


def random_records(n, seed=0) -> list:
    rng = np.random.default_rng(seed)
    return [[rng.integers(-128, 128, 10, dtype=np.int8), rng.integers(-128, 128, 6, dtype=np.int8)]
            for _ in range(n)]


def check_outputs(result, records):
    assert len(result.outputs) == len(records)
    for got, (a, b) in zip(result.outputs, records):
        for g, e in zip(got, expected(a, b)):
            assert g.dtype == e.dtype and g.shape == e.shape
            np.testing.assert_array_equal(g, e)


def emit(tmp_path, board, name="proj", **kw):
    out = tmp_path / name
    emit_project(out, get_board(board), model_files(**kw), [], STAMP)
    return out


# ---------------------------------------------------------------------------------------------
def test_board_registry():
    f746 = get_board("stm32f746")
    assert (f746.cpu, f746.sram_bytes, f746.flash_bytes) == ("cortex-m7", 320 * 1024, 1024 * 1024)
    assert (f746.sram_origin, f746.flash_origin, f746.qemu_machine) == (0x20000000, 0x08000000, "mps2-an500")
    assert "-mfpu=fpv5-sp-d16" in f746.cflags
    h743 = get_board("stm32h743")
    assert (h743.sram_origin, h743.sram_bytes, h743.flash_bytes) == (0x24000000, 512 * 1024, 2 * 1024 * 1024)
    f411 = get_board("stm32f411")
    assert (f411.cpu, f411.qemu_machine, f411.sram_bytes) == ("cortex-m4", "mps2-an386", 128 * 1024)
    assert get_board("host").kind == "host"
    with pytest.raises(UnknownBoardError) as e:
        get_board("stm32f999")
    for name in BOARDS:
        assert name in str(e.value)


def test_project_layout(tmp_path):
    out = emit(tmp_path, "stm32f746")
    for f in ("Makefile", "linker_qemu.ld", "linker_flash.ld", "model.c", "model.h", "input_data.c",
              "kernels/te_common.h", "runtime/main.c", "platform/startup.c", "platform/timer_cmsdk.c"):
        assert (out / f).is_file(), f
    qemu_ld, flash_ld = (out / "linker_qemu.ld").read_text(), (out / "linker_flash.ld").read_text()
    assert "ORIGIN = 0x00000000, LENGTH = 1048576" in qemu_ld
    assert "ORIGIN = 0x20000000, LENGTH = 327680" in qemu_ld
    assert "ORIGIN = 0x08000000, LENGTH = 1048576" in flash_ld
    assert "__stack_size = 8192;" in qemu_ld
    # re-emitting for another board removes the previous board's files
    emit_project(out, get_board("host"), model_files(), [], STAMP)
    assert not (out / "linker_qemu.ld").exists() and not (out / "platform/startup.c").exists()
    assert (out / "platform/host.c").is_file()


@needs_gcc
def test_host_run_records_and_default_input(tmp_path):
    out = emit(tmp_path, "host")
    records = random_records(20)
    res = runner.run(out, records, OUTPUT_SPECS)
    check_outputs(res, records)
    assert res.instructions is None and res.stack_bytes is None
    a, b = records[-1]
    assert f"TE_OUTPUT 0: {' '.join(str(v) for v in expected(a, b)[0])}" in res.stdout
    assert "TE_RECORDS 20" in res.stdout

    # no records: one run on the (empty -> all-zero) default input
    res = runner.run(out, None, OUTPUT_SPECS)
    check_outputs(res, [[np.zeros(10, np.int8), np.zeros(6, np.int8)]])

    # a generated default input
    default = list(range(16))
    out2 = emit(tmp_path, "host", name="proj2", default_input=default)
    res = runner.run(out2, [], OUTPUT_SPECS)
    check_outputs(res, [[np.arange(10, dtype=np.int8), np.arange(10, 16, dtype=np.int8)]])


@needs_gcc
def test_host_project_is_self_contained(tmp_path):
    out = emit(tmp_path, "host")
    moved = shutil.copytree(out, tmp_path / "elsewhere" / "copy")
    shutil.rmtree(out)
    records = random_records(3, seed=5)
    check_outputs(runner.run(moved, records, OUTPUT_SPECS), records)


@needs_gcc
def test_short_input_is_an_error(tmp_path):
    out = emit(tmp_path, "host")
    with pytest.raises(runner.RunError, match="short read"):
        runner.run(out, [[np.zeros(10, np.int8), np.zeros(5, np.int8)]], OUTPUT_SPECS)


@needs_gcc
def test_compile_error_is_condensed(tmp_path):
    out = tmp_path / "bad"
    files = model_files(body="    int unused_variable;")
    emit_project(out, get_board("host"), files, [], STAMP)
    with pytest.raises(runner.BuildError) as e:
        runner.build(out)
    assert "unused_variable" in str(e.value)
    assert len(str(e.value).splitlines()) < 10


@pytest.mark.qemu
@pytest.mark.parametrize("board", ["stm32f746", "stm32f411"])
def test_qemu_run_outputs_stack_and_size(tmp_path, board):
    out = emit(tmp_path, board)
    records = random_records(100, seed=1)
    res = runner.run(out, records, OUTPUT_SPECS)
    check_outputs(res, records)
    assert "TE_RECORDS 100" in res.stdout
    assert res.instructions is not None and 20 < res.instructions < 2000
    stack = get_board(board).stack_bytes
    assert res.stack_bytes is not None and 0 < res.stack_bytes < stack
    sz = runner.size(out)
    assert sz["stack_bytes"] == stack
    assert 64 <= sz["sram_static_bytes"] < 4096  # the 64-byte arena + the runner's buffers
    assert 1000 < sz["flash_bytes"] < 32 * 1024


@pytest.mark.qemu
def test_instruction_count_is_exact_and_repeatable(tmp_path):
    counts = {}
    for n in (1000, 101000):
        out = emit(tmp_path, "stm32f746", name=f"loop{n}", body=BODY_LOOP.format(n=n))
        first = runner.run(out, None, OUTPUT_SPECS).instructions
        again = runner.run(out, None, OUTPUT_SPECS).instructions
        assert first == again  # deterministic with -icount
        counts[n] = first
    # the loop body is 2 instructions per iteration; the rest (call, timer reads) is constant
    assert counts[101000] - counts[1000] == 2 * 100000
    assert 2 * 1000 < counts[1000] < 2 * 1000 + 50


@pytest.mark.qemu
def test_oversized_arena_does_not_fit(tmp_path):
    out = emit(tmp_path, "stm32f746", arena=400 * 1024)
    with pytest.raises(runner.DoesNotFitError) as e:
        runner.build(out)
    err = e.value
    assert err.memory == "SRAM" and err.available == 320 * 1024
    assert 400 * 1024 + 8192 < err.needed < 400 * 1024 + 8192 + 4096
    assert f"model needs {err.needed} bytes of SRAM" in str(err)
    assert "board stm32f746 has 327680" in str(err)
    # the same model fits the emulated machine's 4 MB
    emit_project(out, get_board("mps2-an500"), model_files(arena=400 * 1024), [], STAMP)
    assert runner.build(out).executable.is_file()


@pytest.mark.qemu
def test_board_build_links_at_real_origins(tmp_path):
    import subprocess
    out = emit(tmp_path, "stm32h743")
    subprocess.run(["make", "-s", "flash-build"], cwd=out, check=True, capture_output=True)
    sections = subprocess.run(["arm-none-eabi-readelf", "-S", str(out / "build-flash/model.elf")],
                              check=True, capture_output=True, text=True).stdout
    lines = {p[1]: p for p in (ln.replace("[ ", "[").split() for ln in sections.splitlines()) if len(p) > 3}
    assert int(lines[".isr_vector"][3], 16) == 0x08000000
    assert int(lines[".stack"][3], 16) + 8192 == 0x24000000 + 512 * 1024


# Every printable width, with the int64 values around 2^32 and 2^63 that a 32-bit formatter
# would get wrong.  main.c prints 64-bit values without 64-bit division (no libgcc
# __aeabi_uldivmod); the expected text is Python's str() of the values.
WIDE_VALUES = {
    "int64": [0, 9, 10, 4294967295, 4294967296, 4294967306, 10 ** 10, 12345678901234567,
              999999999999999999, 10 ** 18, 2 ** 63 - 1, -1, -4294967296, -(2 ** 63)],
    "int32": [0, 7, -1, 2 ** 31 - 1, -(2 ** 31), 1000000000],
    "int16": [0, 32767, -32768, -10],
    "uint8": [0, 9, 10, 255],
    "int8": [0, 127, -128, -100],
}
WIDE_DTYPES = {"int64": "TE_DTYPE_INT64", "int32": "TE_DTYPE_INT32", "int16": "TE_DTYPE_INT16",
               "uint8": "TE_DTYPE_UINT8", "int8": "TE_DTYPE_INT8"}


def wide_model_files() -> dict:
    names = list(WIDE_VALUES)
    h = MODEL_H.replace("{arena}", "256").replace("TE_NUM_OUTPUTS 3", f"TE_NUM_OUTPUTS {len(names)}")
    consts, outs, copies, off = [], [], [], 32
    for i, name in enumerate(names):
        vals = WIDE_VALUES[name]
        c_type = f"{name}_t"
        # the most negative int64 has no literal of its own
        lits = ", ".join("INT64_MIN" if v == -(2 ** 63) else f"INT64_C({v})" for v in vals)
        consts.append(f"static const {c_type} v{i}[{len(vals)}] = {{{lits}}};")
        size = np.dtype(name).itemsize * len(vals)
        outs.append(f'    {{(void *)(te_arena + {off}), {size}u, "{name}", {WIDE_DTYPES[name]}}},')
        copies.append(f"    memcpy(te_outputs[{i}].data, v{i}, sizeof(v{i}));")
        off += (size + 7) // 8 * 8
    c = "\n".join([
        "#include <stdint.h>", "#include <string.h>", '#include "model.h"',
        "static uint8_t te_arena[TE_ARENA_BYTES] __attribute__((aligned(16)));",
        *consts,
        "const te_io_t te_inputs[TE_NUM_INPUTS] = {",
        '    {(void *)(te_arena + 0), 10u, "a", TE_DTYPE_INT8},',
        '    {(void *)(te_arena + 16), 6u, "b", TE_DTYPE_INT8},',
        "};",
        "const te_io_t te_outputs[TE_NUM_OUTPUTS] = {", *outs, "};",
        "void te_invoke(void)", "{", *copies, "}", ""])
    return {"model.h": h, "model.c": c}


@pytest.mark.parametrize("board", [
    pytest.param("host", marks=needs_gcc),
    pytest.param("stm32f746", marks=pytest.mark.qemu)])
def test_printed_values_of_every_width(tmp_path, board):
    out = tmp_path / "wide"
    emit_project(out, get_board(board), wide_model_files(), [], STAMP)
    specs = [((len(v),), np.dtype(n)) for n, v in WIDE_VALUES.items()]
    res = runner.run(out, None, specs)
    for i, (name, vals) in enumerate(WIDE_VALUES.items()):
        np.testing.assert_array_equal(res.outputs[0][i], np.array(vals, dtype=name))
        assert f"TE_OUTPUT {i}: {' '.join(str(v) for v in vals)}\n" in res.stdout
    if board != "host":
        import subprocess
        # the runner and the platform call no libgcc / libc code (the fixture's model.c
        # calls memcpy), so a model whose kernels call none links none
        for obj in ("runtime/main.o", "platform/semihost.o", "platform/startup.o",
                    "platform/stack.o", "platform/timer_cmsdk.o"):
            undefined = subprocess.run(["arm-none-eabi-nm", "-u", str(out / "build" / obj)],
                                       check=True, capture_output=True, text=True).stdout.split()
            assert not {"__aeabi_uldivmod", "memcpy", "memset", "strlen"} & set(undefined), obj


# -- no libc memcpy / memmove / memset in the firmware -----------------------------------------
# Byte copies go through kernels/te_move_s8.c and the project builds with
# -fno-tree-loop-distribute-patterns (codegen_templates/Makefile.j2), so that gcc does not turn
# fill / copy loops into libc calls (~720 bytes of Flash for the three).
LIBC_MEMORY = re.compile(r"(__aeabi_)?mem(cpy|move|set|clr)\d*")


def libc_memory_functions(elf) -> set:
    """The libc memory functions a Cortex-M ELF links (test_models, test_all_ops_model and
    test_memory check their firmware with it: it must be empty)."""
    table = subprocess.run(["arm-none-eabi-nm", str(elf)], check=True, capture_output=True,
                           text=True).stdout
    return {ln.split()[-1] for ln in table.splitlines() if LIBC_MEMORY.fullmatch(ln.split()[-1])}


# te_move_s8 cases: (within the work buffer?, dst offset, src offset, n).  Every alignment of
# dst and src around the 16-byte LDM/STM blocks and the word loop, and forward moves that
# overlap by 1 to 17 bytes (the ring shift of a fused pair, RESHAPE).
MOVE_WORK_BYTES = 96
MOVE_CASES = ([(0, 4 + d, s, n) for n in (0, 1, 3, 4, 5, 15, 16, 17, 35, 50)
               for d in range(4) for s in range(4)]
              + [(1, 4 + d, 4 + d + shift, n) for shift in (1, 3, 4, 5, 16, 17)
                 for d in range(4) for n in (7, 33, 48)])
MOVE_OUT_BYTES = sum(n + 8 for _, _, _, n in MOVE_CASES)


def move_model_files() -> dict:
    """te_invoke copies the input into a work buffer, runs one te_move_s8 case and appends
    dst[-4 .. n + 4) (4 guard bytes either side) to the output, for every case."""
    h = (MODEL_H.replace("{arena}", str(256 + MOVE_OUT_BYTES))
         .replace("TE_NUM_INPUTS 2", "TE_NUM_INPUTS 1").replace("TE_NUM_OUTPUTS 3", "TE_NUM_OUTPUTS 1"))
    rows = ",\n".join(f"    {{{k}, {d}, {s_}, {n}}}" for k, d, s_, n in MOVE_CASES)
    c = f"""\
#include <stdint.h>
#include "model.h"
#include "te_move_s8.h"
static uint8_t te_arena[TE_ARENA_BYTES] __attribute__((aligned(16)));
static const int16_t te_cases[{len(MOVE_CASES)}][4] = {{
{rows}
}};
const te_io_t te_inputs[TE_NUM_INPUTS] = {{
    {{(void *)(te_arena + 0), {MOVE_WORK_BYTES}u, "x", TE_DTYPE_INT8}},
}};
const te_io_t te_outputs[TE_NUM_OUTPUTS] = {{
    {{(void *)(te_arena + 256), {MOVE_OUT_BYTES}u, "moved", TE_DTYPE_INT8}},
}};
void te_invoke(void)
{{
    const int8_t *x = (const int8_t *)(te_arena + 0);
    int8_t *work = (int8_t *)(te_arena + 128);
    int8_t *out = (int8_t *)(te_arena + 256);
    for (int c = 0; c < {len(MOVE_CASES)}; ++c) {{
        const int16_t *k = te_cases[c];
        for (int i = 0; i < {MOVE_WORK_BYTES}; ++i) {{
            work[i] = x[i];
        }}
        te_move_s8(work + k[1], (k[0] ? work : x) + k[2], k[3]);
        for (int i = k[1] - 4; i < k[1] + k[3] + 4; ++i) {{
            *out++ = work[i];
        }}
    }}
}}
"""
    return {"model.h": h, "model.c": c}


def expected_moves(x: np.ndarray) -> np.ndarray:
    parts = []
    for within, d, s, n in MOVE_CASES:
        work = x.copy()
        work[d:d + n] = (work if within else x)[s:s + n].copy()   # memmove semantics
        parts.append(work[d - 4:d + n + 4])
    return np.concatenate(parts)


@pytest.mark.parametrize("board", [
    pytest.param("host", marks=needs_gcc),
    pytest.param("stm32f746", marks=pytest.mark.qemu),
    pytest.param("stm32f411", marks=pytest.mark.qemu)])
def test_te_move_s8_every_alignment_and_forward_overlap(tmp_path, board):
    out = tmp_path / "move"
    emit_project(out, get_board(board), move_model_files(), [KERNEL_DIR / "te_move_s8.c"], STAMP)
    records = [[np.random.default_rng(seed).integers(-128, 128, MOVE_WORK_BYTES, dtype=np.int8)]
               for seed in (0, 1)]
    res = runner.run(out, records, [((MOVE_OUT_BYTES,), np.int8)])
    for got, (x,) in zip(res.outputs, records):
        np.testing.assert_array_equal(got[0], expected_moves(x))
    if board != "host":
        assert libc_memory_functions(out / "model.elf") == set()
