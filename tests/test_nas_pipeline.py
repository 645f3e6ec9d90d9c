"""tinynas.pipeline and `tinynas search --data`: the search's winner fine-tuned from a (tiny) supernet,
exported to ONNX, quantized with tinyengine's calibration path, compiled and run on the board. What
tinyengine measures equals the prediction: peak SRAM exactly, Flash within 3%, instructions within 10%
(QEMU); the int8 accuracy is the device's argmax against the held-out labels. Bad input: one line."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tinyengine as te  # noqa: E402
from tinynas.cli import main  # noqa: E402
from tinynas.cost import CostModel, load_fit  # noqa: E402
from tinynas.accuracy import SupernetAccuracy  # noqa: E402
from tinynas.pipeline import FinetuneConfig, deploy  # noqa: E402
from tinynas.space import SearchSpace  # noqa: E402
from tinynas.training import TrainConfig, train  # noqa: E402

# small, yet with the Flash of a real network (85 to 315 KB): on a network of a few KB the code dominates, and
# the code model (a base plus a cost per layer, fitted on such networks) does not see which kernels are linked
TINY = SearchSpace(width_mult=0.35, resolutions=(16, 20), stage_depths=((1, 2),) * 5 + ((1,),))
FIELDS = {"board", "budgets", "candidate", "candidate_file", "onnx", "project", "predictions", "macs", "params",
          "predicted", "measured", "agreement", "accuracy", "finetune", "seconds"}


@pytest.fixture(scope="module")
def supernet_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("supernet")
    train(TrainConfig(data="digits", out=out, space=TINY, epochs=1, steps_per_epoch=16, n_random=0, evaluate=False,
                      progress=False))
    return out / "checkpoint.pt"


def _supernet(ckpt):
    """The supernet and the data split as its training split it (the held-out images: its test split)."""
    m = SupernetAccuracy.from_checkpoint(ckpt, "digits")
    return m.net, m.data


def _check_report(out, report, data, board):
    assert FIELDS <= set(report) and report["board"] == board
    assert json.loads((out / "report.json").read_text()) == report
    assert (out / "model.onnx").stat().st_size > 1000 and json.loads((out / "candidate.json").read_text())
    p, m = report["predicted"], report["measured"]
    assert m["peak_sram_bytes"] == p["peak_sram_bytes"] and m["arena_bytes"] == p["arena_bytes"]
    # the device's predictions, against the labels of the supernet's own test split (held out from training,
    # search and fine-tuning)
    pred = json.loads((out / "predictions.json").read_text())
    labels = data.test_y.tolist()
    assert report["accuracy"]["split"].startswith("test split") and len(labels) == 359
    assert pred["indices"] == data.test_index.tolist()
    assert pred["labels"] == labels and len(pred["device"]) == len(labels) == report["accuracy"]["held_out_images"]
    acc = float(np.mean(np.array(pred["device"]) == np.array(labels)))
    assert report["accuracy"]["int8_device"] == pytest.approx(acc)
    # (how well a 4-step supernet and one epoch of fine-tuning learn is not this test's point)
    agree = np.mean(np.array(pred["device"]) == np.array(pred["float"]))
    assert agree >= 0.8, f"int8 on the device agrees with the float model on {agree:.0%} of the images"


def test_deploy_on_host_sram_equals_prediction(tmp_path, supernet_dir):
    if not te.toolchain_available("host"):
        pytest.skip("no host C compiler")
    net, data = _supernet(supernet_dir)
    c = net.space.smallest()
    # the host has no Flash / instruction fit of its own: its plan (hence SRAM) is what is compared here
    model = CostModel(net.space, "host", fit=load_fit("stm32f746"))
    report = deploy(net, c, model, data, tmp_path, FinetuneConfig(epochs=1, lr=0.05, calib_samples=32),
                    log=lambda s: None)
    _check_report(tmp_path, report, data, "host")
    assert report["measured"]["instructions"] is None


@pytest.mark.qemu
def test_search_with_data_runs_the_winner_on_the_board(tmp_path, supernet_dir, capsys):
    """`tinynas search --digits --supernet CKPT` on stm32f746 (QEMU): report.json as predicted."""
    out = tmp_path / "out"
    rc = main(["search", "--board", "stm32f746", "--sram", "64KB", "--flash", "200KB", "--digits",
               "--supernet", str(supernet_dir), "--accuracy", "supernet", "--population", "3", "--generations", "1",
               "--finetune-epochs", "1", "--no-progress", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    _, data = _supernet(supernet_dir)
    _check_report(out, report, data, "stm32f746")
    p, m = report["predicted"], report["measured"]
    assert abs(m["flash_bytes"] - p["flash_bytes"]) <= 0.03 * m["flash_bytes"]
    assert abs(m["instructions"] - p["instructions"]) <= 0.10 * m["instructions"]
    assert report["agreement"]["ok"] and report["budgets"] == {"sram_bytes": 65536, "flash_bytes": 204800,
                                                               "max_instructions": None}
    assert p["peak_sram_bytes"] <= 65536 and p["flash_bytes"] <= 204800
    search = json.loads((out / "search.json").read_text())
    assert search["candidate"] == report["candidate"]
    assert "int8 accuracy on the device" in capsys.readouterr().out


def _bad_folder(tmp_path, kind):
    root = tmp_path / kind
    root.mkdir()
    if kind == "malformed":
        for name in ("a", "b"):
            (root / name).mkdir()
            (root / name / "x.png").write_bytes(b"not a png")
    return root


@pytest.mark.parametrize("case,message", [
    ("empty", "has no class sub-folders"),
    ("malformed", "cannot read image"),
    ("board", "board: "),
    ("nofit", "the smallest of the space needs peak SRAM"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, supernet_dir, case, message):
    data = ["--data", str(_bad_folder(tmp_path, case))] if case in ("empty", "malformed") else ["--digits"]
    board = "stm32f999" if case == "board" else "stm32f746"
    sram = "4KB" if case == "nofit" else "64KB"
    argv = ["search", "--board", board, "--sram", sram, "--flash", "256KB", *data, "--samples", "1",
            "--no-progress", "-o", str(tmp_path / "o")]
    if case == "nofit":    # a small population: the search tries 100 per slot before it gives up
        argv += ["--supernet", str(supernet_dir), "--population", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinynas: ") and message in err and err.count("\n") == 1, err
