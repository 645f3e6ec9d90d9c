"""bench/run.py: measures the shared models and quotes the peers' figures from the shared README."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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


def test_nas_comparison_counts_images_and_tests_them_as_scipy_does(tmp_path):
    """bench/nas.py's image-by-image comparison over repeated splits: per image, how often each network is
    right; the sign test's p-value equals scipy's exact binomial test (McNemar's exact test for one split)."""
    from scipy.stats import binomtest
    nas = bench_scripts.load("nas")
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 10, 40)

    def run(split, fold, idx, right_s, right_m):
        out = {}
        for name, right in (("searched", right_s), ("mobilenet_v2", right_m)):
            pred = [int(y) if ok else int((y + 1) % 10) for y, ok in zip(labels[idx], right)]
            f = tmp_path / f"{split}-{fold}-{name}.json"
            f.write_text(json.dumps({"indices": idx.tolist(), "labels": labels[idx].tolist(), "device": pred}))
            out[name] = {"predictions": str(f)}
        return {"split_seed": split, "fold": fold, **out}

    results, truth = [], {}
    for split in range(2):
        order = rng.permutation(40)
        for fold in range(2):
            idx = order[fold * 20:(fold + 1) * 20]
            rs, rm = rng.random(20) < 0.8, rng.random(20) < 0.7
            results.append(run(split, fold, idx, rs, rm))
            for i, a, b in zip(idx, rs, rm):
                t = truth.setdefault(int(i), [0, 0])
                t[0] += int(a)
                t[1] += int(b)
    cmp = nas.paired(results)
    better = sum(a > b for a, b in truth.values())
    worse = sum(a < b for a, b in truth.values())
    assert cmp["images"] == 40 and cmp["tests"] == 80
    assert (cmp["images_searched_better"], cmp["images_mobilenet_v2_better"]) == (better, worse)
    assert cmp["searched_correct"] == sum(a for a, _ in truth.values())
    assert cmp["p_value"] == pytest.approx(binomtest(better, better + worse, 0.5).pvalue)
    assert cmp["difference"] == pytest.approx(sum(a - b for a, b in truth.values()) / 80)
    assert cmp["runs_won"] + cmp["runs_tied"] + cmp["runs_lost"] == 4
    # predictions of the two networks on different images are refused
    bad = dict(results[0], mobilenet_v2=results[1]["mobilenet_v2"])
    with pytest.raises(SystemExit, match="test images differ"):
        nas.paired([bad])
