"""`tinyengine profile`: per-layer instruction counts from the firmware (TE_LAYER lines).

With CompileOptions.profile the generated te_invoke() calls te_profile_mark(i) after layer i; the
runner pauses the instruction counter there and prints the layer's count.  Without it the generated
code has no hooks.  On the emulated board the per-layer counts must add up to the total of the
inference (up to te_invoke's own entry and exit), the marks must cost only a few instructions each,
and the outputs must stay those of TensorFlow Lite Micro.  With patch-based inference the stage's
layers are marked once per patch and summed; the stage is one row of the profile.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from tests.golden import run_tflm_many
from tests.test_all_ops_model import build_all_ops_model
from tinyengine import runner
from tinyengine import output_specs, random_records
from tinyengine.cli import main
from tinyengine.compiler import CompileOptions, compile_model, write_project
from tinyengine.hostio import host_io_of

# Upper bound on what one mark adds to the inference: the call, the timer pause and resume, the
# return (about 10 instructions on Cortex-M7 at -O2).
MARK_INSTRUCTIONS = 40


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("profile") / "all_ops.tflite"
    path.write_bytes(build_all_ops_model())
    return path


def _marks(model_c: str) -> list:
    return [int(i) for i in re.findall(r"\bte_profile_mark\((\d+)u\);", model_c)]


def test_profile_option_adds_one_mark_per_layer_and_nothing_without_it(model, tmp_path):
    plain = compile_model(model, CompileOptions(board="stm32f746"))
    write_project(plain, tmp_path / "plain")
    prof = compile_model(model, CompileOptions(board="stm32f746", profile=True))
    write_project(prof, tmp_path / "prof")
    assert _marks((tmp_path / "plain" / "model.c").read_text()) == []
    assert _marks((tmp_path / "prof" / "model.c").read_text()) == list(range(len(prof.graph.nodes)))
    assert "profile" in prof.options.describe() and "profile" not in plain.options.describe()


def test_layer_lines_are_parsed_in_layer_order_first_inference_only():
    stdout = "TE_LAYER 0 10\nTE_LAYER 1 25\nTE_LAYER 2 7\nTE_INSTRUCTIONS 50\n"
    assert runner.parse_layer_counts(stdout) == [10, 25, 7]
    assert runner.parse_layer_counts("TE_INSTRUCTIONS 50\n") is None
    # a patch stage marks its layers once per patch: a layer's lines add up
    stage = "TE_LAYER 0 10\nTE_LAYER 1 5\nTE_LAYER 0 7\nTE_LAYER 1 6\nTE_LAYER 1 2\nTE_LAYER 2 3\n"
    assert runner.parse_layer_counts(stage) == [17, 13, 3]
    with pytest.raises(runner.RunError, match="layer"):
        runner.parse_layer_counts("TE_LAYER 0 10\nTE_LAYER 2 7\n")


def _run(model, profile: bool, out, records):
    return _run_on(model, "stm32f746", profile, out, records)


def _run_on(model, board: str, profile: bool, out, records):
    c = compile_model(model, CompileOptions(board=board, profile=profile))
    write_project(c, out)
    hio = host_io_of(c.graph)
    result = runner.run(out, [hio.to_device(r) for r in records], output_specs(c.graph))
    return c, result, [hio.from_device(o) for o in result.outputs]


@pytest.mark.qemu
def test_layer_counts_add_up_to_the_total_and_outputs_stay_exact(model, tmp_path):
    c0 = compile_model(model, CompileOptions(board="stm32f746"))
    records = random_records(c0.graph, 2, seed=3)
    _, plain, plain_out = _run(model, False, tmp_path / "plain", records)
    c, prof, prof_out = _run(model, True, tmp_path / "prof", records)

    golden = run_tflm_many(str(model), records)
    for outs in (plain_out, prof_out):
        for rec, gold in zip(outs, golden):
            for y, g in zip(rec, gold):
                np.testing.assert_array_equal(y, np.asarray(g).reshape(y.shape))

    assert plain.layer_counts is None
    n = len(c.graph.nodes)
    counts = prof.layer_counts
    assert len(counts) == n and all(k > 0 for k in counts)
    # the layers cover the inference: what is left is te_invoke's entry and exit
    assert 0 <= prof.instructions - sum(counts) <= MARK_INSTRUCTIONS
    # the marks cost a few instructions each, and nothing without profiling
    assert 0 < prof.instructions - plain.instructions <= n * MARK_INSTRUCTIONS
    # printed once, for the first inference
    assert len(re.findall(r"^TE_LAYER ", prof.stdout, re.M)) == n


@pytest.mark.qemu
def test_cli_profile_writes_table_json_and_arena_picture(model, tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["profile", str(model), "--board", "stm32f746", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    prof = json.loads((out / "profile.json").read_text())
    nodes = compile_model(model, CompileOptions(board="stm32f746")).graph.nodes
    assert [r["op"] for r in prof["layers"]] == [nd.op for nd in nodes]
    assert prof["layer_instructions_sum"] == sum(r["instructions"] for r in prof["layers"])
    assert prof["instructions"] - prof["layer_instructions_sum"] == prof["unattributed_instructions"]
    for r in prof["layers"]:
        if r["macs"]:
            assert r["instructions_per_mac"] == pytest.approx(r["instructions"] / r["macs"], abs=1e-3)
        assert 0 < r["sram_in_use_bytes"] <= prof["arena_bytes"]
    report = json.loads((out / "report.json").read_text())
    assert prof["instructions"] == report["instructions"] and prof["macs"] == report["macs"]
    assert (out / "profile.txt").read_text().strip() in text
    assert (out / "arena.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_profile_on_host_is_a_one_line_error(model, tmp_path, capsys):
    rc = main(["profile", str(model), "--board", "host", "-o", str(tmp_path / "h")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Cortex-M" in err


def test_profiled_host_build_runs_without_counts(model, tmp_path):
    from tests.test_firmware import HAVE_GCC

    if not HAVE_GCC:
        pytest.skip("host gcc/make not installed")
    c = compile_model(model, CompileOptions(board="host"))
    records = random_records(c.graph, 1, seed=1)
    _, _, plain_out = _run_on(model, "host", False, tmp_path / "plain", records)
    _, prof, prof_out = _run_on(model, "host", True, tmp_path / "prof", records)
    assert prof.layer_counts is None and "TE_LAYER" not in prof.stdout
    for y, g in zip(prof_out[0], plain_out[0]):
        np.testing.assert_array_equal(y, g)


# -- patch-based inference: the stage is one row, its layers summed over the patches ---------
PATCH_SPEC = "2x2@3"     # 4 patches over layers 0-3, 2-D grid: copy-in / copy-out buffers too


@pytest.fixture(scope="module")
def patch_model(tmp_path_factory):
    from tests.test_memory import STAGES, _chain_model

    path = tmp_path_factory.mktemp("profile_patch") / "chain.tflite"
    path.write_bytes(_chain_model(STAGES["k3s2-k3s1-1x1"] + [("conv", 1, 1, "VALID", 4)],
                                  in_shape=(1, 29, 27, 3)))
    return path


def test_patch_stage_marks_every_layer_in_every_patch(patch_model, tmp_path):
    opts = {"board": "stm32f746", "patch": PATCH_SPEC}
    plain = compile_model(patch_model, CompileOptions(**opts))
    write_project(plain, tmp_path / "plain")
    prof = compile_model(patch_model, CompileOptions(**opts, profile=True))
    write_project(prof, tmp_path / "prof")
    s = prof.plan.patch
    assert s is not None and s.split == 3 and s.code_form == "loop"
    assert _marks((tmp_path / "plain" / "model.c").read_text()) == []
    # inside the patch loop: layers 0..3 (3 after the copy-out); after the loop, the stage's
    # own mark (the loop's exit); then one per layer
    n = len(prof.graph.nodes)
    assert _marks((tmp_path / "prof" / "model.c").read_text()) == [0, 1, 2, 3, 3] + list(range(4, n))


@pytest.mark.qemu
def test_profile_with_patches_has_one_stage_row_and_adds_up(patch_model, tmp_path, capsys):
    from tinyengine import ops, profile

    opts = {"board": "stm32f746", "patch": PATCH_SPEC}
    plain_c = compile_model(patch_model, CompileOptions(**opts))
    records = random_records(plain_c.graph, 2, seed=5)
    golden = run_tflm_many(str(patch_model), records)
    runs = {}
    for name, prof_on in (("plain", False), ("prof", True)):
        c = compile_model(patch_model, CompileOptions(**opts, profile=prof_on))
        write_project(c, tmp_path / name)
        hio = host_io_of(c.graph)
        r = runner.run(tmp_path / name, [hio.to_device(x) for x in records], output_specs(c.graph))
        for rec, gold in zip(r.outputs, golden):
            for y, g in zip(hio.from_device(rec), gold):
                np.testing.assert_array_equal(y, np.asarray(g).reshape(y.shape))
        runs[name] = (c, r)
    c, result = runs["prof"]
    plain = runs["plain"][1]
    g, s = c.graph, c.plan.patch
    n, split = len(g.nodes), s.split

    # the firmware marks each stage layer once per patch, plus the stage's own mark
    marks = len(s.patches) * (split + 1) + 1 + (n - split - 1)
    assert len(re.findall(r"^TE_LAYER ", result.stdout, re.MULTILINE)) == marks
    for k in range(split):
        assert len(re.findall(rf"^TE_LAYER {k} ", result.stdout, re.MULTILINE)) == len(s.patches)

    prof, table, picture, _ = profile.write_profile(c, result, c.report, tmp_path / "prof")
    rows = prof["layers"]
    stage = rows[0]
    assert stage["kind"] == "patch_stage" and stage["op"] == "PATCH_STAGE"
    assert stage["node"] == "patch stage 2x2: layers 0-3"
    assert (stage["index"], stage["last_index"], stage["patches"]) == (0, split, 4)
    assert [r["op"] for r in stage["layers"]] == [nd.op for nd in g.nodes[:split + 1]]
    assert [r["op"] for r in rows[1:]] == [nd.op for nd in g.nodes[split + 1:]]
    assert all(r["instructions"] > 0 for r in profile.layer_list(prof))
    assert stage["instructions"] == sum(r["instructions"] for r in stage["layers"])
    # MACs: the stage executes the halos twice (MACs of the patch nodes, counted independently)
    whole = sum(ops.get(nd.op).macs(nd, g) for nd in g.nodes[:split + 1])
    per_patch = sum(ops.get(nd.op).macs(nd, p.graph) for p in s.patches for nd in p.graph.nodes)
    assert stage["macs"] == per_patch > whole and stage["halo_macs"] == per_patch - whole
    assert stage["instructions_per_mac"] == pytest.approx(stage["instructions"] / per_patch, abs=1e-3)
    assert prof["macs"] == c.report["macs_executed"] == sum(r["macs"] for r in rows)
    for r in rows + stage["layers"]:
        assert 0 < r["sram_in_use_bytes"] <= prof["arena_bytes"]
    assert stage["sram_in_use_bytes"] == max(r["sram_in_use_bytes"] for r in stage["layers"])

    # totals: the rows cover the whole inference (te_invoke's entry and exit aside), and the
    # profiled inference is the plain one plus the marks
    total = sum(r["instructions"] for r in rows)
    assert total == prof["layer_instructions_sum"] == sum(result.layer_counts)
    assert prof["instructions"] == result.instructions == total + prof["unattributed_instructions"]
    assert 0 <= prof["unattributed_instructions"] <= MARK_INSTRUCTIONS
    assert 0 < result.instructions - plain.instructions <= marks * MARK_INSTRUCTIONS

    # the arena picture: the stage's patch-sized buffers and its copy buffers are drawn
    kinds = {b[1] for b in profile.arena_blocks(c)}
    names = {b[0] for b in profile.arena_blocks(c)}
    assert "patch" in kinds and {"patch_in", "patch_out"} <= names
    assert picture is not None and picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = table.splitlines()
    assert sum("patch stage 2x2: layers 0-3" in ln for ln in lines) == 1
    assert sum(ln.lstrip().startswith(f"({k})") for k in range(split + 1) for ln in lines) == split + 1
