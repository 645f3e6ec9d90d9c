"""tinynas supernet: static subnets equal the supernet, batch norm equals PyTorch's, sandwich training learns,
torchrun on 2 CPU processes equals one process with the same global batch, resume is exact, and bad input
gets a one-line error. Tiny widths, 16x16 inputs, a few steps."""
import json
import os
import random
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tqdm")

from tinynas.errors import TinyNasError  # noqa: E402
from tinynas.space import SearchSpace  # noqa: E402
from tinynas.supernet import SuperNet  # noqa: E402
from tinynas.training import TrainConfig, main, sandwich, train, train_step  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = SearchSpace(width_mult=0.25, resolutions=(12, 16), stage_widths=(24, 40, 80), stage_strides=(2, 2, 2),
                   stage_depths=((1, 2), (1, 2), (1,)), in_channels=1)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _scramble_bn(net, space, seed):
    """Non-trivial running statistics (a few training-mode passes over random candidates)."""
    rng = random.Random(seed)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            c = space.sample(rng)
            net.set_active(c)
            net(torch.randn(8, space.in_channels, c.r, c.r))


@pytest.mark.parametrize("se", [False, True])
def test_subnet_equals_supernet(se):
    space = replace(TINY, se=se)
    torch.manual_seed(0)
    net = SuperNet(space)
    _scramble_bn(net, space, 1)
    rng = random.Random(2)
    for c in [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(4)]:
        x = torch.randn(4, 1, c.r, c.r)
        net.eval()
        net.set_active(c)
        sub = net.get_active_subnet().eval()
        with torch.no_grad():
            assert torch.allclose(net(x), sub(x), rtol=0, atol=1e-6), c
        # training mode: the supernet's sliced batch norm against nn.BatchNorm2d (PyTorch's own)
        net.train()
        sub.train()
        out, ref = net(x), sub(x)
        assert torch.allclose(out, ref, rtol=1e-4, atol=1e-4), (c, (out - ref).abs().max())
        again = net.get_active_subnet()
        for (name, a), b in zip(sub.state_dict().items(), again.state_dict().values()):
            if "running" in name:
                assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), name


def test_kernel_is_the_centre_crop():
    torch.manual_seed(0)
    net = SuperNet(TINY)
    c = replace(TINY.largest(), ks=((3, 5), (7, 3), (5,)))
    sub = net.get_active_subnet(c)
    big = net.stages[0][1].depthwise.weight
    mid = sub.blocks[2].depthwise[0].weight.shape[0]
    assert torch.equal(sub.blocks[2].depthwise[0].weight, big[:mid, :, 1:6, 1:6])
    assert net.active == TINY.largest()     # extraction leaves the active candidate alone


def test_sandwich_step_reduces_loss():
    torch.manual_seed(0)
    net = SuperNet(replace(TINY, num_classes=4))
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.randn(16, 1, 16, 16), torch.arange(16) % 4
    first = train_step(net, net, opt, x, y, sandwich(net.space, 0, 0, 2), True)
    for step in range(1, 15):
        last = train_step(net, net, opt, x, y, sandwich(net.space, 0, step, 2), True)
    # the largest (on the labels) and the smallest (on the largest's soft labels) both learn the batch
    assert last[0] < 0.5 * first[0], (first, last)
    assert last[1] < first[1], (first, last)


def _tiny_space_file(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps(TINY.to_dict()))
    return path


def _args(space_file, out, **extra):
    a = ["train", "--data", "digits", "--space", str(space_file), "--out", str(out), "--batch-size", "32",
         "--no-progress", "--no-eval", "--seed", "3"]
    for k, v in extra.items():
        a += [f"--{k.replace('_', '-')}", str(v)]
    return a


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _state(out):
    return torch.load(Path(out) / "checkpoint.pt", weights_only=True)


def test_torchrun_two_processes_match_one(tmp_path):
    """2 ranks x 16 images equal 1 process x 32 images: 4 steps over 2 epochs (the candidates, data order,
    synchronised batch norm and gradient averaging all agree). Tolerance 1e-5 absolute on every parameter
    and BN statistic (measured: about 4e-7, the order of float sums). Over more steps any two float orders
    drift apart: at lr 0.05 a 1e-7 change of one process's initial weights grows to 3e-4 within 3 steps on
    these tiny networks, so the test runs 4 steps at lr 0.002."""
    space = _tiny_space_file(tmp_path)
    common = dict(epochs=2, steps_per_epoch=2, lr=0.002)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                           "-m", "tinynas.supernet", *_args(space, tmp_path / "ddp", **common)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert main(_args(space, tmp_path / "one", **common)) == 0
    ddp, one = _state(tmp_path / "ddp"), _state(tmp_path / "one")
    assert ddp["step"] == one["step"] == 4
    worst = max((ddp["model"][k].double() - v.double()).abs().max().item() for k, v in one["model"].items())
    assert worst < 1e-5, worst
    torch.manual_seed(3)
    init = SuperNet(replace(TINY, num_classes=10)).state_dict()
    moved = max((one["model"][k] - init[k]).abs().max().item() for k in init if "running" not in k)
    assert moved > 1e-3         # the parameters did move, so the comparison means something
    logs = [[json.loads(line) for line in (tmp_path / d / "log.jsonl").read_text().splitlines()] for d in ("ddp", "one")]
    for a, b in zip(*logs):
        assert abs(a["loss"] - b["loss"]) < 1e-5 and abs(a["loss_others"] - b["loss_others"]) < 1e-5


def test_resume_equals_uninterrupted_run(tmp_path):
    cfg = TrainConfig(data="digits", out=tmp_path / "full", space=TINY, epochs=3, batch_size=32, steps_per_epoch=2,
                      progress=False, calib_batches=1, seed=5)
    train(cfg)
    part = replace(cfg, out=tmp_path / "part", stop_after=1)
    train(part)
    assert _state(tmp_path / "part")["epoch"] == 1
    train(replace(part, resume=True, stop_after=None))
    full, resumed = _state(tmp_path / "full"), _state(tmp_path / "part")
    assert resumed["epoch"] == full["epoch"] == 3 and resumed["step"] == full["step"] == 6
    for k, v in full["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
    for i, s in full["optimizer"]["state"].items():
        assert torch.equal(s["momentum_buffer"], resumed["optimizer"]["state"][i]["momentum_buffer"])
    log = [json.loads(line) for line in (tmp_path / "part" / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1, 2, 3]
    assert 0.0 <= log[-1]["acc_largest"] <= 1.0


def _write_png(path, size=10, value=0):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (value, value, value)).save(path)


def test_image_folder_loads(tmp_path):
    from tinynas.data import load
    for cls in ("cat", "dog", "eel"):
        for i in range(5):
            _write_png(tmp_path / "imgs" / cls / f"{i}.png", size=7 + i, value=40 * i)
    (tmp_path / "imgs" / "README.txt").write_text("not a class")
    d = load(str(tmp_path / "imgs"), 16, None, 0.2, 0)
    assert d.classes == ["cat", "dog", "eel"] and d.in_channels == 3
    assert d.train_x.shape == (12, 3, 16, 16) and d.val_x.shape == (3, 3, 16, 16)
    assert sorted(d.val_y.tolist()) == [0, 1, 2]
    assert d.train_x.min() >= -1 and d.train_x.max() <= 1


def _bad_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    _write_png(tmp_path / "flat" / "a.png")
    _write_png(tmp_path / "oneclass" / "a" / "x.png")
    _write_png(tmp_path / "noimages" / "a" / "x.png")
    (tmp_path / "noimages" / "b").mkdir()
    (tmp_path / "noimages" / "b" / "notes.txt").write_text("x")
    _write_png(tmp_path / "corrupt" / "a" / "x.png")
    _write_png(tmp_path / "corrupt" / "b" / "y.png")
    (tmp_path / "corrupt" / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "badspace.json").write_text('{"kernel_sizes": [3, 4]}')
    (tmp_path / "notjson.json").write_text('{"width_mult": ')
    return {
        "missing": ([str(tmp_path / "nope")], "does not exist"),
        "empty": ([str(tmp_path / "empty")], "has no class sub-folders"),
        "flat": ([str(tmp_path / "flat")], "has no class sub-folders"),
        "oneclass": ([str(tmp_path / "oneclass")], "needs at least 2"),
        "noimages": ([str(tmp_path / "noimages")], "noimages/b has no images"),
        "corrupt": ([str(tmp_path / "corrupt")], "cannot read image"),
        "badspace": (["digits", "--space", str(tmp_path / "badspace.json")], "kernel_sizes must be odd"),
        "notjson": (["digits", "--space", str(tmp_path / "notjson.json")], "not JSON"),
        "resume": (["digits", "--resume"], "nothing to resume"),
        "batch": (["digits", "--batch-size", "0"], "--batch-size must be at least 1"),
        "channels": (["digits", "--channels", "2"], "--channels must be 1 or 3"),
    }


def test_bad_input_one_line_errors(tmp_path, capsys):
    for name, (args, needle) in _bad_folders(tmp_path).items():
        code = main(["train", "--data", *args, "--out", str(tmp_path / "o"), "--epochs", "1", "--no-progress"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, name
        assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], (name, err)


def test_cli_errors_from_the_command_line(tmp_path, capsys):
    """Through `python -m tinynas.supernet` (one subprocess) and main(): unknown options and commands,
    one line, exit 2, no usage block or traceback."""
    proc = subprocess.run([sys.executable, "-m", "tinynas.supernet", "train", "--data", "digits", "--out",
                           str(tmp_path), "--bogus"], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "unrecognized arguments: --bogus" in lines[0], proc.stderr
    for args, needle in ((["fly"], "invalid choice: 'fly'"), (["train", "--out", "x"], "--data"),
                         (["train", "--data", "digits", "--out", "x", "--epochs", "two"], "--epochs")):
        with pytest.raises(SystemExit) as info:
            main(args)
        lines = capsys.readouterr().err.strip().splitlines()
        assert info.value.code == 2 and len(lines) == 1 and needle in lines[0], lines


def test_config_checks():
    with pytest.raises(TinyNasError, match="--n-random must be at least 0"):
        TrainConfig(data="digits", out=Path("x"), n_random=-1).check()
