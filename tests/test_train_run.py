"""`tinytrain run` (the training firmware on the host build and on QEMU) against `tinytrain fit
--int8` (the PyTorch simulation of the same steps), and bench/train.py's demo section."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests import bench_scripts

from tests.conftest import have_arm_toolchain
from tests.test_train_graph import small_model

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
SCHEME = ["--bias-last", "2", "--weights", "1:0.5", "--epochs", "2", "--lr", "0.05"]


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """The small model (batch 1) and a 3-class task it can learn: 60 training and 30 held-out
    uint8 images whose label's channel is brighter."""
    pytest.importorskip("tinytrain.firmware")
    d = tmp_path_factory.mktemp("run")
    model = small_model(d / "small1.tflite", batch=1)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (90, 10, 10, 3)).astype(np.uint8)
    y = rng.integers(0, 3, 90)
    for i in range(90):
        x[i, ..., y[i]] = np.clip(x[i, ..., y[i]].astype(int) + 90, 0, 255)
    np.savez(d / "train.npz", x=x[:60], y=y[:60])
    np.savez(d / "test.npz", x=x[60:], y=y[60:])
    return d, model


def _cli(args, out):
    from tinytrain import cli
    assert cli.main(args + ["-o", str(out)]) == 0
    return json.loads((out / "report.json").read_text())


def _data(d):
    return ["--classes", "3", "--train", str(d / "train.npz"), "--test", str(d / "test.npz")]


def test_run_on_host_equals_the_int8_simulation(task, capsys):
    """The firmware's host build and `fit --int8` train the same steps: the same held-out
    accuracy after every epoch and mean losses within 1e-3 (float32 gradients summed in
    another order can round an int8 weight the other way)."""
    d, model = task
    run = _cli(["run", str(model), *_data(d), "--board", "host", *SCHEME], d / "run-host")
    fit = _cli(["fit", str(model), "--host", *_data(d), "--board", "host", *SCHEME],
               d / "fit-int8")
    out = capsys.readouterr().out
    assert "peak SRAM" in out and "full backprop" in out and "epoch   2" in out
    assert [r["test_accuracy"] for r in run["curve"]] == [r["test_accuracy"] for r in fit["curve"]]
    for a, b in zip(run["curve"][1:], fit["curve"][1:]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-3)
    assert run["test_accuracy"] >= 0.8 > run["curve"][0]["test_accuracy"]
    assert run["peak_sram_bytes"] > 0 and run["flash_bytes"] > 0
    assert (d / "run-host" / "accuracy.png").is_file()
    assert run["full_backprop_plan"]["peak_sram_bytes"] > run["plan"]["peak_sram_bytes"]


@pytest.mark.qemu
@pytest.mark.skipif(not have_arm_toolchain(), reason="needs arm-none-eabi-gcc and qemu")
def test_run_on_qemu_equals_the_host_build(task):
    """The emulated Cortex-M7 trains to the same curve as the host build (the firmware's floats
    are the same bits there) and reports instructions per step and per prediction."""
    d, model = task
    m7 = _cli(["run", str(model), *_data(d), "--board", "stm32f746", *SCHEME], d / "run-m7")
    host = json.loads((d / "run-host" / "report.json").read_text()) \
        if (d / "run-host" / "report.json").is_file() else \
        _cli(["run", str(model), *_data(d), "--board", "host", *SCHEME], d / "run-host")
    assert m7["curve"] == host["curve"]
    assert m7["step_instructions"] > m7["predict_instructions"] > 0
    assert 0 < m7["peak_sram_bytes"] <= 320 * 1024


# -- bench/train.py ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bench():
    return bench_scripts.load("train")


def _runs(head, on, off, host, peak=200_000):
    def r(acc, where="stm32f746 (QEMU)"):
        return {"where": where, "curve": [(0, None, 0.1), (1, 1.0, acc)], "accuracy": acc,
                "peak_sram_bytes": peak, "flash_bytes": 500_000, "step_instructions": 9,
                "predict_instructions": 3}
    return {"head": r(head), "sparse": r(on), "noqas": r(off), "float32": r(host, "host")}


def test_bench_checks_and_section(bench, tmp_path):
    ok = bench.checks(_runs(0.80, 0.90, 0.85, 0.905))
    assert all(met for _, met in ok), ok
    for runs, failing in ((_runs(0.86, 0.90, 0.85, 0.90), 0),       # < 5 points over head
                          (_runs(0.80, 0.90, 0.85, 0.92), 1),       # > 1 point from float32
                          (_runs(0.80, 0.90, 0.91, 0.90), 2),       # QAS off better
                          (_runs(0.80, 0.90, 0.85, 0.90, 300_000), 3)):
        met = [m for _, m in bench.checks(runs)]
        assert not met[failing] and sum(met) == 3, (failing, met)
    meta = {"date": "d", "commit": "c", "seconds": 1.0, "cpus": 2, "train": 9, "test": 9,
            "epochs": 1, "lr": 0.05, "lr_schedule": "cosine", "scheme": "s", "scheme_source": "default scheme",
            "full_backprop": {"peak_sram_bytes": 1_000_000}}
    text = bench.section(_runs(0.80, 0.90, 0.85, 0.905), meta)
    assert "| sparse update, QAS on | stm32f746 (QEMU) | 10.0 % | 90.0 % | 200,000 |" in text
    assert "| full backprop | planned" in text and "1,000,000" in text
    md = tmp_path / "B.md"
    md.write_text("# Benchmarks\n\nother\n")
    bench.write_section(md, text)
    bench.write_section(md, text.replace("90.0 %", "91.0 %"))      # replaced, not appended
    new = md.read_text()
    assert new.count(bench.SECTION_BEGIN) == 1 and "91.0 %" in new and "other" in new


@pytest.mark.qemu
@pytest.mark.skipif(not have_arm_toolchain(), reason="needs arm-none-eabi-gcc and qemu")
def test_bench_fast_path(bench, models_dir, tmp_path):
    """The demo end to end on 12 samples of each set, one epoch: three mcunet-vww1 training
    firmwares built and run on QEMU two at a time, the host float32 run, the section written
    (the accuracy checks need the full run: `make train-demo`)."""
    pytest.importorskip("tinytrain.firmware")
    md, js = tmp_path / "B.md", tmp_path / "b.json"
    rc = bench.main(["--models", str(models_dir), "--limit", "12", "--epochs", "1",
                     "-o", str(md), "--work", str(tmp_path / "w"), "--json", str(js)])
    assert rc in (0, 1)
    runs = json.loads(js.read_text())["runs"]
    assert set(runs) == {"head", "sparse", "noqas", "float32"}
    for r in runs.values():
        assert [row[0] for row in r["curve"]] == [0, 1]
    sparse, head = runs["sparse"], runs["head"]
    assert sparse["peak_sram_bytes"] <= 256 * 1024 < json.loads(js.read_text())["meta"][
        "full_backprop"]["peak_sram_bytes"]
    assert sparse["step_instructions"] > head["step_instructions"] > 0
    text = md.read_text()
    assert "| sparse update, float32 | host (PyTorch) |" in text and "Issue 13's demo checks" in text
