"""Fused 1x1 expand conv -> depthwise conv, row-streamed (tinyengine/fusion.py).

* forced fusion of every candidate pair (3x3 / 5x5 / 7x7 depthwise, stride 1 / 2, SAME /
  VALID, odd sizes, channel counts not multiples of 4) is bit-exact with TensorFlow Lite
  Micro on the host build and on QEMU (stm32f746, stm32f411), as is the unfused build;
* the plan of a fused pair replays without a clobbered byte, and the simulator catches a
  ring placed over the expand conv's input;
* the compiler fuses a pair only where the arena drops, ``--no-fuse`` switches it off;
* mcunet-vww1: fused automatically, bit-exact on QEMU, peak SRAM <= 70,000 bytes measured;
* a pair's rows that differ only at the borders loop over a table of their distinct rows;
* a pair's per-channel tables stored bit-packed are expanded once into the pair's scratch,
  counted by the planner, bit-exact on QEMU.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.golden import run_tflm_many
from tests.test_memory import _chain_model, _write
from tinyengine import fusion, overlap, planner
from tinyengine import build_and_run, random_records
from tinyengine.cli import main
from tinyengine.codegen import fused_pair
from tinyengine.compiler import CompileOptions, compile_model, write_project

# each 1x1 expand conv is followed by the depthwise conv it feeds (a fusion candidate)
MODELS = {
    "a": ((1, 29, 23, 5), [("conv", 1, 1, "VALID", 22), ("dw", 3, 1, "SAME", 0),
                           ("conv", 1, 1, "VALID", 13), ("dw", 5, 2, "VALID", 0),
                           ("conv", 1, 1, "VALID", 10), ("dw", 7, 1, "SAME", 0),
                           ("conv", 1, 1, "VALID", 7), ("dw", 3, 2, "SAME", 0),
                           ("conv", 1, 1, "VALID", 4)]),
    "b": ((1, 31, 17, 3), [("conv", 1, 1, "VALID", 9), ("dw", 5, 1, "SAME", 0),
                           ("conv", 1, 1, "VALID", 14), ("dw", 7, 2, "VALID", 0),
                           ("conv", 1, 1, "VALID", 6), ("dw", 3, 1, "VALID", 0),
                           ("conv", 1, 1, "VALID", 11), ("dw", 5, 2, "SAME", 0),
                           ("conv", 1, 1, "VALID", 4)]),
    "c": ((1, 27, 21, 6), [("conv", 1, 1, "VALID", 17), ("dw", 7, 2, "SAME", 0),
                           ("conv", 1, 1, "VALID", 5), ("dw", 3, 2, "VALID", 0),
                           ("conv", 1, 1, "VALID", 4)]),
}


def _model(tmp_path, name) -> str:
    shape, layers = MODELS[name]
    return _write(tmp_path, f"fuse_{name}", _chain_model(layers, in_shape=shape, seed=3))


def _forced(path, board):
    """Compiled with every candidate pair fused (whether or not it lowers the arena)."""
    c = compile_model(path, CompileOptions(board=board, fuse=False))
    fs = fusion.candidates(c.graph)
    c.plan = planner.plan_graph(c.graph, fusions=fs)
    return c, fs


def _check_forced(path, board, tmp_path, n=2):
    c, fs = _forced(path, board)
    assert len(fs) >= 2
    overlap.simulate(c.graph, c.plan)
    out = tmp_path / f"forced_{board}"
    write_project(c, out)
    records = random_records(c.graph, n, 0)
    expected = run_tflm_many(path, records)
    result = build_and_run(c, out, records)
    for got, gold in zip(result.outputs, expected):
        for y, g in zip(got, gold):
            np.testing.assert_array_equal(y, np.asarray(g).reshape(y.shape))
    assert "fused with" in (out / "model.c").read_text()
    return c


def test_schedule_covers_every_row_once():
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        for name in MODELS:
            c, fs = _forced(_model(Path(d), name), "host")
            for f in fs:
                rows = list(range(f.prime[0], f.prime[0] + f.prime[1])) if f.prime else []
                rows += [r for st in f.steps for r in range(st.new0, st.new0 + st.new)]
                h = c.graph.tensors[f.tensor].shape[1]
                assert rows == sorted(set(rows)) and set(rows) <= set(range(h))
                for st in f.steps:      # new rows land behind the kept ones, inside the ring
                    assert 0 <= st.dw_pos <= st.pos and st.pos + st.new <= f.ring_rows
                assert f.ring_rows <= c.graph.nodes[f.dw].params["k_h"]
                assert len(f.steps) == c.graph.tensors[c.graph.nodes[f.dw].outputs[0]].shape[1]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forced_fusion_on_host_is_bit_exact(name, tmp_path, capsys):
    path = _model(tmp_path, name)
    _check_forced(path, "host", tmp_path)
    # the unfused build of the same model too
    rc = main(["verify", path, "--board", "host", "-n", "2", "--no-fuse", "-o", str(tmp_path / "u")])
    assert rc == 0, capsys.readouterr().out
    assert json.loads((tmp_path / "u" / "report.json").read_text())["fusions"] == []


@pytest.mark.qemu
@pytest.mark.parametrize("board", ["stm32f746", "stm32f411"])
def test_forced_fusion_on_qemu_is_bit_exact(board, tmp_path):
    for name in ("a", "b"):
        _check_forced(_model(tmp_path, name), board, tmp_path / name, n=1)


def test_simulator_catches_a_ring_over_the_expand_input(tmp_path):
    c, fs = _forced(_model(tmp_path, "c"), "host")
    f = fs[0]
    x = c.graph.nodes[f.expand].inputs[0]
    bad = dict(c.plan.offsets)
    bad[f.tensor] = bad[x]
    c.plan.offsets = bad
    with pytest.raises(AssertionError):
        overlap.simulate(c.graph, c.plan)


def test_fusion_is_chosen_only_where_the_arena_drops(tmp_path, capsys):
    path = _model(tmp_path, "c")          # stride-2 depthwise: the expanded tensor dominates
    fused = compile_model(path, CompileOptions(board="host"))
    plain = compile_model(path, CompileOptions(board="host", fuse=False))
    assert fused.plan.fusions and fused.plan.arena_bytes < plain.plan.arena_bytes
    overlap.simulate(fused.graph, fused.plan)
    # stride 1 everywhere: the depthwise output is as large as the expanded tensor, no gain
    one = _write(tmp_path, "s1", _chain_model([("conv", 1, 1, "VALID", 12), ("dw", 3, 1, "SAME", 0),
                                               ("conv", 1, 1, "VALID", 4)], in_shape=(1, 15, 13, 3)))
    c1 = compile_model(one, CompileOptions(board="host"))
    assert c1.plan.fusions == []
    assert c1.plan.arena_bytes == compile_model(one, CompileOptions(board="host", fuse=False)).plan.arena_bytes
    rc = main(["verify", path, "--board", "host", "-n", "2", "-o", str(tmp_path / "o")])
    assert rc == 0, capsys.readouterr().out
    assert json.loads((tmp_path / "o" / "report.json").read_text())["fusions"]


@pytest.mark.qemu
def test_mcunet_fused_peak_sram_measured_on_qemu(models_dir, tmp_path, capsys):
    path = str(models_dir / "mcunet/mcunet-vww1.tflite")
    c = compile_model(path, CompileOptions())
    overlap.simulate(c.graph, c.plan)
    assert c.plan.fusions
    # the fused expand conv's table is bit-packed (its expansion fits the arena as it is)
    assert "rq_packed" in c.graph.nodes[c.plan.fusions[0].expand].params
    args = ["verify", path, "--board", "stm32f746", "-n", "1", "-o", str(tmp_path / "o")]
    assert main(args) == 0, capsys.readouterr().out
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["fusions"] and report["peak_sram_bytes"] <= 70000, report["peak_sram_bytes"]
    assert report["instructions"] <= 26_700_000


def _loop_values(bodies, tmp_path):
    """Run the loop fused_pair.render_pair makes of ``bodies`` (C calls ``f(<literals>);``) on the
    host: the literals each row passes, as the C computes them."""
    import subprocess

    from tinyengine.codegen import environment

    n = len(bodies)
    loop = environment().get_template("fused_expand_dw.c.j2").render(
        part="pair", runs=[dict(loop=True, first=0, n=n, **fused_pair._affine_loop(bodies))],
        rows=n, ring_rows=3, prime=None, unpack=[], tensor="t", expand_name="e")
    k = bodies[0].count(",") + 1
    args = ", ".join(f"long v{i}" for i in range(k))
    prints = " ".join(f'printf("%ld ", v{i});' for i in range(k))
    src = tmp_path / "loop.c"
    src.write_text(f'#include <stdint.h>\n#include <stdio.h>\n'
                   f'static void f({args}) {{ {prints} printf("\\n"); }}\n'
                   f'int main(void)\n{loop}\n')
    exe = tmp_path / "loop"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-o", str(exe), str(src)],
                   check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return [[int(v) for v in line.split()] for line in out.splitlines()], loop


def test_loop_keeps_only_distinct_rows_of_literals(tmp_path):
    """A fused pair's rows differ from one common row only at the borders (first / last row:
    input rows, ring positions, padding): the loop stores those few rows, not one a row
    (a 160x160 MCUNet-like model had a 40-row int32 table of 640 bytes, now 3 rows), and
    every row still passes exactly its own literals."""
    rows = []
    for r in range(40):       # in rows, ring offset, dw in rows, pad, input row, output row
        rows.append([1 if r == 39 else 2, 242624 if r == 0 else 232384,
                     3 if r == 0 else 4 if r == 39 else 5, 2 if r == 0 else 0,
                     103680 + 2560 * r, 2560 * r, 7])
    # more rows off the common one: every row stored
    irregular = rows[:20] + [[2, 232384, 5, 0, 103680 + 2560 * 20, 3, 7]] + rows[20:] + \
        [[5, 6, 7, 8, 9, 10, 7]]
    for case, stored in ((rows, 3), (irregular, len(irregular))):
        bodies = ["f(" + ", ".join(map(str, r)) + ");" for r in case]
        got, loop = _loop_values(bodies, tmp_path)
        assert got == case
        assert len(fused_pair._affine_loop(bodies)["table"]) == stored, loop


def _pack_pair_tables(c, fs) -> list:
    """Store every fused pair's per-channel tables bit-packed whether or not the arena grows
    (the compiler does it only where it does not: memory.grant_compact_params); replan."""
    from tinyengine.ops import chanpack

    packed = []
    for f in fs:
        for k in (f.expand, f.dw):
            cp = fusion.pair_channel_params(c.graph, f, k)
            if cp is not None and chanpack.packable(cp):
                c.graph.nodes[k].params["rq_packed"] = chanpack.pack(cp)
                c.graph.nodes[k].params["rq_table_bytes"] = chanpack.table_bytes(cp.n, cp.group)
                packed.append(k)
    c.plan = planner.plan_graph(c.graph, fusions=fs)
    return packed


@pytest.mark.qemu
def test_fused_pair_tables_bit_packed_on_qemu(tmp_path):
    """A fused pair's per-channel tables stored bit-packed: expanded once before the first row
    into the pair's scratch, which the planner counts and keeps alive over both nodes; the
    rows read them there, bit-exact with TFLM (channel counts 22, 13, 10, 7: short groups)."""
    path = _model(tmp_path, "a")
    c = compile_model(path, CompileOptions(board="stm32f746", fuse=False, compact_params=False))
    fs = fusion.candidates(c.graph)
    plain = planner.plan_graph(c.graph, fusions=fs)
    packed = _pack_pair_tables(c, fs)
    g = c.graph
    assert {g.nodes[k].op for k in packed} == {"CONV_2D", "DEPTHWISE_CONV_2D"} and len(packed) >= 6
    for f in fs:
        for k in (f.expand, f.dw):
            name = g.nodes[k].name
            extra = int(g.nodes[k].params.get("rq_table_bytes", 0))
            assert c.plan.scratch.get(name, (0, 0))[1] == plain.scratch.get(name, (0, 0))[1] + extra
            if extra:
                assert c.plan.lifetimes[f"scratch:{name}"][:2] == (f.expand, f.dw)
    overlap.simulate(c.graph, c.plan)
    out = tmp_path / "o"
    write_project(c, out)
    text = (out / "model.c").read_text() + (out / "weights.c").read_text()
    assert text.count("te_unpack_channels(te_n") == len(packed)   # once a pair, not a row
    for k in packed:      # the unpacked tables are not in Flash
        names = ("acc_init", "rq_mult", "rq_shift") if g.nodes[k].op == "CONV_2D" else ("rq",)
        assert not any(f"te_n{k}_{n}" in text.replace("_rq_packed", "") for n in names)
    records = random_records(c.graph, 2, 0)
    expected = run_tflm_many(path, records)
    result = build_and_run(c, out, records)
    for got, gold in zip(result.outputs, expected):
        for y, gd in zip(got, gold):
            np.testing.assert_array_equal(y, np.asarray(gd).reshape(y.shape))
