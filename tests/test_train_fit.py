"""Host training (tinytrain.fit, `tinytrain fit --host`): the simulated int8 training equals
the NumPy reference of the same steps (te.run_reference on the training graph, then the update
kernels' definitions), float32 training learns, and the command writes its curve."""
from __future__ import annotations

import json

import numpy as np
import pytest

import tinyengine as te
from tests.test_train_graph import small_model
from tinytrain import graph as tgm
from tinytrain import reference
from tinytrain import scheme as sc
from tinytrain.ops import UPDATE_KERNELS

pytest.importorskip("torch")
from tinytrain import fit as fm  # noqa: E402

CLASSES = 3
SPARSE = sc.Scheme(bias_last=2, weights=((1, 0.5), (2, 0.75)))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return small_model(tmp_path_factory.mktemp("fit") / "small1.tflite", batch=1)


def samples(n, seed=0):
    """n int8 inputs whose label is decided by the mean of the channel with the largest
    mean: a task the small model can learn from its own features."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (n, 10, 10, 3)).astype(np.int8)
    y = rng.integers(0, CLASSES, n)
    for i in range(n):
        x[i, ..., y[i]] = np.clip(x[i, ..., y[i]].astype(int) + 90, -128, 127)
    return x, y


def reference_training(tg, xs, ys, opts):
    """The NumPy reference: per sample te.run_reference of the whole training graph (forward,
    loss, backward in float64 rounded to float32 per op), then every update node's kernel
    definition on the parameters as the firmware holds them.  Returns (params, losses)."""
    updates = [n for n in tg.graph.nodes if n.attrs.get("kernel") in UPDATE_KERNELS]
    params = {p: np.array(tg.graph.tensors[p].data) for p in tg.params}
    vel = {n.inputs[0]: None if n.inputs[3] is None else
           np.zeros(tg.graph.tensors[n.inputs[3]].shape, np.float32) for n in updates}
    losses = []
    total = opts.epochs * len(ys)
    for step in range(total):
        i = step % len(ys)
        for p, v in params.items():
            tg.graph.tensors[p].data = v
        values = te.run_reference(tg.graph, [xs[i:i + 1], np.array([ys[i]], np.int32)],
                                  keep_all=True)
        losses.append(float(values["loss"][0]))
        lr = fm.lr_at(step, total, opts.lr, opts.lr_schedule)
        for n in updates:
            p = n.inputs[0]
            qas = None if n.inputs[2] is None else tg.graph.tensors[n.inputs[2]].data
            params[p], vel[p] = reference.KERNELS[n.attrs["kernel"]](
                params[p], values[n.inputs[1]], qas, vel[p], **dict(n.attrs["args"], lr=lr))
    return params, losses


@pytest.mark.parametrize("scheme, momentum, schedule", [
    (SPARSE, 0.0, "constant"),
    (sc.Scheme(full=True), 0.9, "cosine"),
])
def test_int8_simulation_equals_numpy_reference(model, scheme, momentum, schedule):
    """24 steps of the PyTorch int8 simulation against the NumPy reference of the same steps.
    Gradients differ only by float32 rounding (torch's float32 against float64 rounded per
    op), so an update may round an int8 weight the other way: at most 1 apart, and in at most
    2 % of the trained weights; int32 biases within 1e-3 of their range of change; the losses
    within 1e-3."""
    opts = fm.Options(epochs=2, lr=0.05, momentum=momentum, lr_schedule=schedule)
    xs, ys = samples(12)
    tg = tgm.build(tgm.forward_graph(str(model), "host", CLASSES, seed=1), scheme,
                   lr=opts.lr, momentum=momentum)
    want, ref_losses = reference_training(tg, xs, ys, opts)
    tg = tgm.build(tgm.forward_graph(str(model), "host", CLASSES, seed=1), scheme,
                   lr=opts.lr, momentum=momentum)
    trainer = fm.HostTrainer(tg, opts)
    start = {p: np.array(v) for p, v in trainer.value.items()}
    feats = trainer.features(xs)
    losses = [trainer.step(feats, s % 12, int(ys[s % 12]), fm.lr_at(s, 24, opts.lr, schedule))
              for s in range(24)]
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-3, atol=1e-4)
    changed = 0
    for p, w in want.items():
        got = trainer.value[p]
        assert got.dtype == w.dtype
        if w.dtype == np.int8:
            d = np.abs(got.astype(int) - w.astype(int))
            assert d.max() <= 1 and (d > 0).mean() <= 0.02, (p, d.max(), (d > 0).mean())
        else:
            span = np.abs(w.astype(np.int64) - start[p]).max()
            assert np.abs(got.astype(np.int64) - w).max() <= max(1, 1e-3 * span), p
        changed += int((w != start[p]).sum())
    assert changed > 0, "training changed no parameter: the comparison tests nothing"


def test_frozen_prefix_is_cached_exactly(model):
    """The sparse scheme's prefix (below its earliest trained layer) computed once: its int8
    outputs equal the full forward's values of the same tensors."""
    fwd = tgm.forward_graph(str(model), "host", CLASSES, seed=1)
    trainer = fm.HostTrainer(tgm.build(fwd, sc.Scheme(bias_last=2)), fm.Options())
    assert trainer.prefix is not None and trainer.boundary
    xs, _ = samples(3)
    feats = trainer.features(xs)
    for i in range(3):
        values = te.run_reference(fwd, [xs[i:i + 1]], keep_all=True)
        for t in trainer.boundary:
            assert np.array_equal(feats[t][i:i + 1], values[t])


def test_float32_and_int8_learn(model):
    """Both modes raise the held-out accuracy of the small task from chance."""
    xs, ys = samples(100, seed=4)
    for float32 in (False, True):
        tg = tgm.build(tgm.forward_graph(str(model), "host", CLASSES, seed=1), SPARSE)
        res = fm.HostTrainer(tg, fm.Options(epochs=2, lr=0.05, float32=float32)).fit(
            (xs[:70], ys[:70]), (xs[70:], ys[70:]))
        assert [r[0] for r in res.curve] == [0, 1, 2] and res.curve[0][1] is None
        assert res.accuracy >= 0.6 and res.accuracy > res.curve[0][2] + 0.15, res.curve


def test_lr_schedule():
    assert fm.lr_at(5, 10, 0.1, "constant") == 0.1
    assert fm.lr_at(0, 10, 0.1, "cosine") == 0.1
    assert fm.lr_at(5, 10, 0.1, "cosine") == pytest.approx(0.05)
    assert fm.lr_at(9, 10, 0.1, "cosine") < 0.003


def test_fit_command_writes_curve(model, tmp_path, capsys):
    from tinytrain import cli

    xs, ys = samples(60, seed=5)
    # the images as uint8 pixels: data.quantize maps pixel p to p - 128
    np.savez(tmp_path / "train.npz", x=(xs[:40].astype(np.int16) + 128).astype(np.uint8),
             y=ys[:40])
    np.savez(tmp_path / "test.npz", x=(xs[40:].astype(np.int16) + 128).astype(np.uint8),
             y=ys[40:])
    out = tmp_path / "out"
    assert cli.main(["fit", str(model), "--host", "--classes", "3", "--board", "host",
                     "--train", str(tmp_path / "train.npz"), "--test", str(tmp_path / "test.npz"),
                     "--bias-last", "2", "--epochs", "2", "--float32", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "epoch   2" in text and "float32 simulation" in text
    report = json.loads((out / "report.json").read_text())
    assert [r["epoch"] for r in report["curve"]] == [0, 1, 2]
    assert report["mode"] == "float32" and report["test_samples"] == 20
    assert report["scheme"]["bias_last"] == 2
    assert (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    # fit without --host: one line, exit 2
    assert cli.main(["fit", str(model), "--classes", "3", "--train", "x", "--test", "y"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "give --host" in err[0]
