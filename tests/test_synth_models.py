"""Seeded synthetic int8 models (tests/synth_models.py) against TensorFlow Lite Micro.

Each seed's model uses every supported op, random shapes and random quantization (per-channel
weight scales negative, near 1e-10, exact powers of two, above 1; constant channels; random
zero points).  It is compiled, built and run on the host and on both emulated CPUs (Cortex-M7
stm32f746, Cortex-M4 stm32f411: the DSP kernels), one firmware build per board and all
N_INPUTS random inputs in one run, and every output must equal TFLM's.  Odd seeds run the
first stage patch by patch (``--patch RxC@3``), even ones the default schedule (where the
first block's expand and depthwise convs run fused).

test_synthetic_models_cover_every_kernel_path compiles the default seeds and asserts that
together they take every path of REQUIRED_PATHS (kernels, requantization modes, depthwise
loops, fusion, patches, packed tables, constant channels, multiplier kinds), so that a
change of the generator or of the kernel choice cannot silently leave one untested.

The default suite runs DEFAULT_SEEDS; ``slow`` runs SLOW_SEEDS more.  To look at a failing
seed: ``python -m tests.test_synth_models SEED BOARD`` (``--probe``: every activation tensor
an output, to find the first op that differs; no fusion or patches then).
"""
from __future__ import annotations

import functools
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests.golden import run_tflm_many
from tests.synth_models import ALL_FEATURES, build
from tinyengine import (CompileOptions, build_and_run, compile_model, host_io_of, load_model,
                        random_records, write_project)
from tinyengine import ops
from tinyengine.ops.chanpack import has_exceptions
from tinyengine.ops.conv import RQ_FAST, RQ_FULL_RANGE, RQ_POST_OFFSET, constant_channels
from tinyengine.ops.depthwise_conv import DSP as DW_DSP
from tinyengine.ops.depthwise_conv import SWITCHES as DW_SWITCHES

# seeds of the default suite: together they take every path of REQUIRED_PATHS
# (test_synthetic_models_cover_every_kernel_path); ``slow`` runs the rest of range(24)
DEFAULT_SEEDS = (0, 1, 2, 3, 6, 7)
SLOW_SEEDS = tuple(s for s in range(24) if s not in DEFAULT_SEEDS)
N_INPUTS = 100
GRIDS = ("2x2", "3x1", "2x3")
QEMU_BOARDS = ("stm32f746", "stm32f411")

REQUIRED_PATHS = frozenset(
    # the int8 ops (float ops at a model's edges: tests/test_float_edges.py, with a tolerance)
    [f"op:{op}" for op in ops.supported_ops() if not op.endswith("_F32")]
    + [f"kernel:{k}" for k in (
        "te_conv_2d_s8", "te_conv_2d_1x1_s8_dsp", "te_conv_2d_s8_dsp",
        "te_depthwise_conv_2d_s8", "te_depthwise_conv_2d_s8_dsp",
        "te_fully_connected_s8", "te_fully_connected_per_channel_s8", "te_fully_connected_s8_dsp",
        "te_add_s8", "te_add_s8_dsp", "te_add_bcast_s8", "te_requantize_s8")]
    + [f"switch:{s}" for s in DW_SWITCHES]
    + ["dw_dsp:int8_weights", "dw_dsp:fast_requant", "dw_dsp:clamped_requant",
       "dw_dsp:depth_multiplier_2_portable",
       "conv_dsp:first_layer_3ch", "conv_dsp:per_tensor",
       "fc_dsp:per_channel", "fc_dsp:per_tensor",
       "dsp:negative_scale_folded", "dsp:negative_multiplier_kept",
       "rq:fast", "rq:fast+post_offset", "rq:generic", "rq:full_range", "rq:clamped",
       "fusion", "patch:rows", "patch:tiles", "compact_params", "fold_pad",
       "const_channel:zero_weights", "const_channel:saturated",
       "multiplier:negative", "multiplier:zero_shift_below_-31", "multiplier:above_1",
       "multiplier:exact_power_of_2", "conv:dilation", "input:float32"])


def options_for(seed: int, board: str) -> CompileOptions:
    """Odd seeds: the stem and the first block (nodes 0-3) as a patch stage; even: default."""
    patch = f"{GRIDS[(seed // 2) % len(GRIDS)]}@3" if seed % 2 else None
    return CompileOptions(board=board, patch=patch)


_TMP = tempfile.TemporaryDirectory(prefix="te_synth_")   # removed when the session ends
_DIR = Path(_TMP.name)


@functools.lru_cache(maxsize=None)
def model_path(seed: int, features=ALL_FEATURES, probe: bool = False) -> Path:
    path = _DIR / f"synth_{seed}{'_probe' if probe else ''}_{'_'.join(sorted(features))}.tflite"
    path.write_bytes(build(seed, features, probe))
    return path


@functools.lru_cache(maxsize=None)
def golden(path: Path, seed: int) -> tuple:
    """(records, TFLM outputs) for N_INPUTS seeded random inputs."""
    records = random_records(load_model(path), N_INPUTS, seed)
    return records, run_tflm_many(path, records)


# -- the paths a compiled model takes ---------------------------------------------------------
def _rq_paths(p) -> set:
    mode = int(p["rq_mode"])
    out = {"rq:full_range" if mode & RQ_FULL_RANGE else "rq:clamped"}
    if not mode & RQ_FAST:
        out.add("rq:generic")
    else:
        out.add("rq:fast+post_offset" if mode & RQ_POST_OFFSET else "rq:fast")
    return out


def _channel_paths(node, graph) -> set:
    """Multiplier kinds and constant channels of a conv / depthwise / FC node as TFLite
    computes them (the portable kernels' parameters: a host compile)."""
    p = node.params
    if "out_mult" not in p or "acc_init" not in p:
        return set()
    mult = np.atleast_1d(np.asarray(p["out_mult"], np.int64))
    shift = np.atleast_1d(np.asarray(p["out_shift"], np.int64))
    out = set()
    if np.any(mult < 0):
        out.add("multiplier:negative")
    if np.any((mult == 0) & (shift == 0)):
        out.add("multiplier:zero_shift_below_-31")
    if np.any(shift > 0):
        out.add("multiplier:above_1")
    if np.any(np.abs(mult) == 1 << 30):
        out.add("multiplier:exact_power_of_2")
    if mult.size > 1:
        w = np.asarray(graph.tensors[node.inputs[1]].data)
        w2d = w.reshape(-1, mult.size).T if node.op == "DEPTHWISE_CONV_2D" else w.reshape(mult.size, -1)
        zero = ~np.any(w2d != 0, axis=1)
        const, _ = constant_channels(p["acc_init"], w2d, mult, shift,
                                     clamp=(p["output_offset"], p["act_min"], p["act_max"]))
        if zero.any():
            out.add("const_channel:zero_weights")
        if np.any(const & ~zero):
            out.add("const_channel:saturated")
    return out


def unused_switches(project: Path) -> set:
    """The kernel switches the generated Makefile sets to 0 (no call takes that path)."""
    line = re.search(r"^KERNEL_SWITCHES :=(.*)$", (project / "Makefile").read_text(), re.M)
    return set(re.findall(r"-D(\w+)=0", line.group(1)))


def kernel_paths(c, loaded, project: Path) -> set:
    """The REQUIRED_PATHS labels compiled model c takes (loaded: its graph before passes;
    project: where its C project was written)."""
    g = c.graph
    out = {f"op:{n.op}" for n in loaded.nodes}
    if any(g_t.dtype == "float32" for g_t in (loaded.tensors[t] for t in loaded.inputs)):
        out.add("input:float32")
    names = {n.name for n in g.nodes}
    if any(n.op == "PAD" and n.name not in names for n in loaded.nodes):
        out.add("fold_pad")
    for n in g.nodes:
        p = n.params
        k = p.get("kernel")
        if k:
            out.add(f"kernel:{k}")
        if "rq_mode" in p:
            out |= _rq_paths(p)
        if "rq_packed" in p:
            out.add("compact_params")
            if has_exceptions(p["rq_packed"]):
                out.add("compact_params:exceptions")
        if n.op in ("CONV_2D", "DEPTHWISE_CONV_2D") and max(p["dil_h"], p["dil_w"]) > 1:
            out.add("conv:dilation")
        if k in ("te_conv_2d_s8_dsp", "te_conv_2d_1x1_s8_dsp"):
            if p["in_c"] == 3:
                out.add("conv_dsp:first_layer_3ch")
            if g.tensors[n.inputs[1]].quant.scale.size == 1:
                out.add("conv_dsp:per_tensor")
        if k == "te_fully_connected_s8_dsp":
            out.add("fc_dsp:per_channel" if p["per_channel"] else "fc_dsp:per_tensor")
        if k == DW_DSP:
            full = (p["act_min"], p["act_max"], p["output_offset"]) == (-128, 127, -128)
            out.add("dw_dsp:fast_requant" if full else "dw_dsp:clamped_requant")
            if not (full and p["in_c"] >= 4 and int(p.get("scratch_bytes", 0) or 0) > 0):
                out.add("dw_dsp:int8_weights")
        cp = ops.get(n.op).channel_params(n)
        if cp is not None and np.any(g.tensors[n.inputs[1]].quant.scale < 0):
            # negative weight scales: channels negated at compile time, or (a weight -128)
            # a negative multiplier the kernel takes as it is
            out.add("dsp:negative_multiplier_kept" if np.any(np.asarray(cp.mult) < 0)
                    else "dsp:negative_scale_folded")
        if n.op == "DEPTHWISE_CONV_2D" and c.board.has_dsp and p["depth_multiplier"] > 1:
            out.add("dw_dsp:depth_multiplier_2_portable")
    if any(f"kernel:{DW_DSP}" == x for x in out):
        out |= {f"switch:{s}" for s in DW_SWITCHES if s not in unused_switches(project)}
    if c.plan.fusions:
        out.add("fusion")
    if c.plan.patch is not None:
        out.add("patch:tiles" if c.plan.patch.grid[1] > 1 else "patch:rows")
    return out


def channel_paths(c) -> set:
    return set().union(*(_channel_paths(n, c.graph) for n in c.graph.nodes))


# -- running ------------------------------------------------------------------------------------
def differences(names, got, expected) -> list:
    """One line per output that differs from TFLM on some input: how many inputs, the
    largest difference, the channels (last axis) involved, the first input's values."""
    lines = []
    for i, name in enumerate(names):
        g_all = [np.asarray(e[i]).reshape(np.shape(y[i])) for y, e in zip(got, expected)]
        y_all = [y[i] for y in got]
        bad = [k for k, (y, e) in enumerate(zip(y_all, g_all))
               if y.dtype != e.dtype or not np.array_equal(y, e)]
        if not bad:
            continue
        diff = np.stack([np.abs(y_all[k].astype(np.float64) - g_all[k].astype(np.float64))
                         for k in bad])
        chans = sorted(set(np.nonzero(diff)[-1].tolist())) if diff.ndim > 1 else []
        k = bad[0]
        where = np.flatnonzero(y_all[k] != g_all[k])[:6]
        lines.append(f"output '{name}' {y_all[k].dtype}{list(y_all[k].shape)}: {len(bad)} of "
                     f"{len(got)} inputs differ, largest difference {diff.max():g}, channels "
                     f"{chans[:16]}{'...' if len(chans) > 16 else ''}; input {k} at {where.tolist()}: "
                     f"ours {y_all[k].ravel()[where].tolist()}, TFLM {g_all[k].ravel()[where].tolist()}")
    return lines


def run_seed(seed: int, board: str, out_dir: Path, features=ALL_FEATURES, probe=False):
    """(compiled model, its paths, difference lines) for one seed on one board."""
    path = model_path(seed, frozenset(features), probe)
    records, expected = golden(path, seed)
    opts = options_for(seed, board)
    if probe:
        opts.patch = None
    c = compile_model(path, opts)
    write_project(c, out_dir)
    result = build_and_run(c, out_dir, records)
    names = [t.name for t in host_io_of(c.graph).model_outputs]
    return c, kernel_paths(c, load_model(path), out_dir), differences(names, result.outputs,
                                                                      expected)


def _check(seed, board, tmp_path, features=ALL_FEATURES):
    c, paths, diff = run_seed(seed, board, tmp_path / board, features)
    assert not diff, (f"seed {seed} on {board} ({c.options.describe()}; scale kinds "
                      f"{sorted(features)}), paths "
                      f"{sorted(p for p in paths if not p.startswith('op:'))}:\n" + "\n".join(diff))
    # not a degenerate test: most outputs take several values over the inputs
    _, expected = golden(model_path(seed, features), seed)
    varied = sum(len({np.asarray(e[i]).tobytes() for e in expected}) > 1
                 for i in range(len(expected[0])))
    assert varied >= len(expected[0]) - 1, f"seed {seed}: only {varied} outputs vary"


BOARDS = ["host"] + [pytest.param(b, marks=pytest.mark.qemu) for b in QEMU_BOARDS]


@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("seed", DEFAULT_SEEDS)
def test_synthetic_model_is_bit_exact(seed, board, tmp_path):
    _check(seed, board, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("seed", SLOW_SEEDS)
def test_synthetic_model_sweep_is_bit_exact(seed, board, tmp_path):
    _check(seed, board, tmp_path)


def test_synthetic_models_cover_every_kernel_path(tmp_path):
    covered = set()
    for seed in DEFAULT_SEEDS:
        path = model_path(seed)
        loaded = load_model(path)
        for board in ("host", "stm32f746"):
            c = compile_model(path, options_for(seed, board))
            project = tmp_path / f"{seed}_{board}"
            write_project(c, project)
            covered |= kernel_paths(c, loaded, project)
            if board == "host":
                covered |= channel_paths(c)
    missing = sorted(REQUIRED_PATHS - covered)
    assert not missing, f"no default seed takes {missing}"


def test_generator_is_seeded_and_varies():
    assert build(3) == build(3)
    assert build(3) != build(4)
    shapes = {tuple(load_model(model_path(s)).tensors[load_model(model_path(s)).inputs[0]].shape)
              for s in DEFAULT_SEEDS}
    assert len(shapes) > 1


def main(argv) -> int:
    """python -m tests.test_synth_models SEED BOARD [--probe] [--without KIND,..] [-o DIR]:
    the model, its project and the differences from TFLM (DIR keeps the model and project)."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("seed", type=int)
    ap.add_argument("board")
    ap.add_argument("--probe", action="store_true")
    ap.add_argument("--without", default="", help="scale kinds left out, comma-separated")
    ap.add_argument("-o", "--out", default=None, help="default build/synth_SEED_BOARD")
    a = ap.parse_args(argv)
    feats = ALL_FEATURES - set(filter(None, a.without.split(",")))
    out = Path(a.out or f"build/synth_{a.seed}_{a.board}")
    c, paths, diff = run_seed(a.seed, a.board, out, feats, a.probe)
    model = out / model_path(a.seed, feats, a.probe).name
    model.write_bytes(model_path(a.seed, feats, a.probe).read_bytes())
    print(f"seed {a.seed} on {a.board} ({c.options.describe()}): {model}, project in {out}")
    print("paths:", " ".join(sorted(p for p in paths if not p.startswith("op:"))))
    producer = {t: n for n in c.graph.nodes for t in n.outputs}
    for line in diff:
        name = line.split("'")[1]
        n = producer.get(name)
        print(f"[{n.op} {n.params.get('kernel', '')}] " if n else "", line, sep="")
    if not diff:
        print(f"bit-exact on {N_INPUTS} inputs")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
