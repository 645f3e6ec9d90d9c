"""bench/run.py: measures the shared models and quotes the peers' figures from the shared README."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import bench_scripts

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    return bench_scripts.load("run")


def test_peer_figures_are_quoted_from_the_shared_readme(bench, models_dir):
    readme = (models_dir / "README.md").read_text()
    figures = bench.readme_figures(models_dir)
    for stem in ("vww_96_int8", "kws_ref_model", "pretrainedResnet_quant", "ad01_int8", "mcunet-vww1"):
        for column in ("TFLM + CMSIS-NN", "TFLM arena_used_bytes", "TinyEngine instructions"):
            cell = figures[stem][column]
            assert f"| {cell} |" in readme, (stem, column)
    assert bench.number("19,735,062 (wrong outputs)") == 19735062
    assert bench.number("cannot compile (10x4 kernel)") is None


def test_rows_with_options_this_cli_lacks_are_not_run(bench):
    assert bench.cli_accepts([])
    assert not bench.cli_accepts(["--no-such-option", "x"])


@pytest.mark.qemu
def test_bench_measures_a_model_and_writes_the_table(bench, models_dir, tmp_path, capsys):
    md, js = tmp_path / "B.md", tmp_path / "b.json"
    rc = bench.main(["--models", str(models_dir), "--only", "ad01_int8", "-o", str(md), "--json", str(js)])
    assert rc == 0, capsys.readouterr().out
    (row,) = json.loads(js.read_text())["rows"]
    fig = bench.readme_figures(models_dir)["ad01_int8"]
    assert row["bit_exact"] and row["instructions"] > 0 and row["macs"] == bench.number(fig["MACs"])
    # the model file's weights as counted here agree with the README's measurement
    assert row["model_weights_bytes"] == bench.number(fig["weights (bytes)"])
    assert row["flash_minus_weights"] == row["flash_bytes"] - row["model_weights_bytes"]
    assert row["peak_sram_bytes"] == row["static_sram_bytes"] + row["stack_bytes"]
    text = md.read_text()
    assert f"| ad01_int8 | {row['macs']:,} | {row['instructions']:,} |" in text
    assert fig["TFLM + CMSIS-NN"] in text and "Issue 4 targets" in text


def test_other_benchmarks_sections_survive_a_rewrite(bench, tmp_path):
    """bench/nas.py writes its section between markers; bench/run.py keeps it when it rewrites the file."""
    nas = bench_scripts.load("nas")
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\n| old table |\n")
    nas.write_section(md, f"{nas.BEGIN}\nfirst\n{nas.END}")
    nas.write_section(md, f"{nas.BEGIN}\nsecond\n{nas.END}")       # replaced in place, not appended
    text = md.read_text()
    assert text.count(nas.BEGIN) == 1 and "second" in text and "first" not in text and "| old table |" in text
    kept = bench.kept_sections(md)
    assert kept.strip() == f"{nas.BEGIN}\nsecond\n{nas.END}"
