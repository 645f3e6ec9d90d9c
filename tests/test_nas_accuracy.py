"""tinynas.accuracy: subnet accuracy measured on the held-out validation split after BN recalibration
(cached), an accuracy predictor fitted on such measurements that ranks held-out subnets (a stated bound),
the search with measured accuracy, and `tinynas search --supernet CKPT --digits`. One tiny supernet
(width 0.25, three stages, 12-16 px digits) trained once for the module (about 10 s on one core)."""
import json
import random

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tqdm")
scipy_stats = pytest.importorskip("scipy.stats")

from tinynas.accuracy import (AccuracyPredictor, SupernetAccuracy, choose_accuracy, encode,  # noqa: E402
                              fit_predictor, spearman, verify)
from tinynas.cli import main  # noqa: E402
from tinynas.cost import CostModel  # noqa: E402
from tinynas.data import load  # noqa: E402
from tinynas.errors import TinyNasError  # noqa: E402
from tinynas.search import Constraints, EvolutionSearch  # noqa: E402
from tinynas.space import Candidate, SearchSpace  # noqa: E402
from tinynas.training import TrainConfig, train  # noqa: E402

TINY = SearchSpace(width_mult=0.25, resolutions=(12, 16), stage_widths=(24, 40, 80), stage_strides=(2, 2, 2),
                   stage_depths=((1, 2), (1, 2), (1,)), in_channels=1)

# held-out rank correlation the predictor must reach on this supernet (measured 0.6 to 0.7; log10 MACs 0.4)
SPEARMAN_BOUND = 0.45

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("supernet")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # the two-way split (no test split): with 80% of the digits to train on, this tiny supernet's subnets
        # differ by more than the noise of measuring them on 359 images, which the predictor's bound needs
        # (with 60%, ridge's held-out rank correlation measured -0.1 to 0.7 over 6 to 16 epochs)
        train(TrainConfig(data="digits", out=out, space=TINY, epochs=6, batch_size=64, steps_per_epoch=20, lr=0.1,
                          evaluate=False, progress=False, test_fraction=0.0))
    finally:
        torch.set_num_threads(n)
    return out / "checkpoint.pt"


@pytest.fixture(scope="module")
def measured(checkpoint):
    return SupernetAccuracy.from_checkpoint(checkpoint, "digits")


def _distinct(space, n, seed):
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        c = space.sample(rng)
        if c not in out:
            out.append(c)
    return out


def test_measured_accuracy_is_on_the_held_out_split_and_cached(measured):
    data = load("digits", 16, None, 0.2, 0)          # the split training used (its val_fraction and seed)
    assert torch.equal(measured.data.val_y, data.val_y) and len(measured.data.val_y) == 359   # 20% per class
    assert len(measured.data.train_y) + len(measured.data.val_y) == 1797 and measured.data.test_y is None
    big, small = measured.space.largest(), measured.space.smallest()
    accs = measured.predict_acc([big, small, big])
    assert accs[0] == accs[2] and measured.measured >= 2
    assert accs[0] > 0.8 and accs[1] > 0.5          # trained far above chance (0.1)
    # the figure is the subnet's accuracy with recalibrated BN, counted here again by hand
    sub = measured.net.get_active_subnet(small)
    for bn in (m for m in sub.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.reset_running_stats()
        bn.momentum = None
    sub.train()
    with torch.no_grad():
        for x in measured.calib:
            sub(torch.nn.functional.interpolate(x, size=(12, 12), mode="bilinear", antialias=True))
        sub.eval()
        val = torch.nn.functional.interpolate(measured.data.val_x, size=(12, 12), mode="bilinear", antialias=True)
        hits = (sub(val).argmax(1) == measured.data.val_y).sum().item()
    assert accs[1] == hits / 359


def test_predictor_ranks_held_out_subnets(measured):
    cands = _distinct(measured.space, 140, seed=5)
    accs = measured.predict_acc(cands)
    assert max(accs) - min(accs) > 0.05             # the subnets differ: ranking them means something
    fresh_c, fresh_a = cands[100:], accs[100:]      # never seen by the fit, not even as its hold-out
    for model in ("mlp", "ridge"):
        p = AccuracyPredictor(measured.space, model, seed=0)
        rep = p.fit(cands[:100], accs[:100])
        assert rep.samples == 100 and rep.held_out == 25
        assert rep.spearman > SPEARMAN_BOUND, (model, rep)
        assert rep.rmse < 0.03
        assert spearman(p.predict_acc(fresh_c), fresh_a) > SPEARMAN_BOUND, model
    macs = spearman([measured.space.macs(c) for c in fresh_c], fresh_a)
    assert spearman(p.predict_acc(fresh_c), fresh_a) > macs     # it learns more than "bigger is better"


def test_fit_predictor_verify_and_the_choice_rule(measured):
    p = fit_predictor(measured, 40, model="ridge", seed=1)
    assert p.report.samples == 40 and len(p.predict_acc([measured.space.largest()])) == 1
    ranked = _distinct(measured.space, 10, seed=11)
    allowed = set(ranked[:5]) | set(list(measured.cache)[:3])      # three measured before: the samples compete
    winner, acc = verify(measured, ranked, 5, lambda c: c in allowed)
    assert acc == max(measured.cache[c] for c in allowed) and measured.cache[winner] == acc and winner in allowed
    assert choose_accuracy(population=16, generations=5, samples=200) == "supernet"       # 96 <= 200
    assert choose_accuracy(population=100, generations=20, samples=200) == "predictor"    # 2100 > 200


def test_encoding_and_predictor_errors():
    c = TINY.sample(random.Random(0))
    f = encode(TINY, c)
    assert len(f) == len(encode(TINY, TINY.largest())) == len(encode(TINY, TINY.smallest()))
    # per block slot: kernel and expand one-hots (3 + 3), zero where the depth leaves the slot out;
    # then the depth one-hots of the two elastic stages, the resolution one-hot, width, log10 MACs
    slots = sum(max(d) for d in TINY.stage_depths)
    assert len(f) == slots * 6 + 2 + 2 + len(TINY.resolutions) + 2
    small = encode(TINY, TINY.smallest())
    # smallest: one block per stage, kernel 3 and expand 3 each; slot layout: stage 0 (2 slots, 2 depths),
    # stage 1 (2 slots, 2 depths), stage 2 (1 slot)
    one = [1, 0, 0, 1, 0, 0]
    assert small[:-4] == one + [0] * 6 + [1, 0] + one + [0] * 6 + [1, 0] + one
    assert small[-4:-2] == [1, 0]       # resolution 12 of (12, 16)
    big = encode(TINY, TINY.largest())
    assert sum(big[:12]) == 4 and big[:6] == [0, 0, 1, 0, 0, 1]
    assert f[-2] == 0.25 and f[-1] == pytest.approx(__import__("math").log10(TINY.macs(c)))
    with pytest.raises(TinyNasError, match="model must be one of ridge, mlp"):
        AccuracyPredictor(TINY, "forest")
    with pytest.raises(TinyNasError, match="not fitted"):
        AccuracyPredictor(TINY).predict_acc([c])
    with pytest.raises(TinyNasError, match="too few to fit"):
        AccuracyPredictor(TINY).fit([c] * 5, [0.5] * 5)


def test_spearman_equals_scipy():
    rng = random.Random(3)
    a = [rng.randint(0, 6) for _ in range(40)]      # with ties
    b = [x + rng.random() * 4 for x in a]
    assert spearman(a, b) == pytest.approx(scipy_stats.spearmanr(a, b).statistic, abs=1e-12)
    assert spearman([1, 1, 1], [1, 2, 3]) == 0.0


def test_search_with_measured_accuracy(measured):
    probe = CostModel(measured.space, "stm32f746")     # a budget half of the space meets
    sram = sorted(probe.get_efficiency(c).peak_sram_bytes for c in _distinct(measured.space, 12, 9))[6]
    cost = CostModel(measured.space, "stm32f746")      # what the search asks, and only that, in its cache
    cons = Constraints(sram_bytes=sram, flash_bytes=10**7)
    res = EvolutionSearch(measured.space, cost, measured, cons, population=6, seed=2).run(2)
    assert cons.fits(res.efficiency)
    assert res.score == measured.measure(res.candidate)
    # every candidate the search scored fits; the winner is the best of them
    # (membership first: get_efficiency would add a candidate measured by another test to the cache)
    scored = [c for c in measured.cache if c in cost._cache and cons.fits(cost.get_efficiency(c))]
    assert res.score == max(measured.cache[c] for c in scored)
    assert res.history == sorted(res.history)


def test_search_command_with_a_trained_supernet(checkpoint, tmp_path):
    out = tmp_path / "o"
    base = ["search", "--board", "stm32f411", "--sram", "64KB", "--flash", "256KB", "--digits",
            "--supernet", str(checkpoint), "--population", "4", "--generations", "1", "--no-progress"]
    assert main(base + ["-o", str(out)]) == 0       # auto: 4 x 2 <= 200 measurements: measured
    res = json.loads((out / "search.json").read_text())
    about = res["accuracy_predictor"]
    assert about["kind"] == "supernet" and res["score"] == about["best_measured"] > 0.5
    assert res["space"] == TINY.to_dict() and res["predicted"]["peak_sram_bytes"] <= 64 * 1024
    assert main(base + ["--accuracy", "predictor", "--predictor-samples", "24", "--predictor-model", "ridge",
                        "-o", str(out)]) == 0
    res = json.loads((out / "search.json").read_text())
    about = res["accuracy_predictor"]
    assert about["kind"] == "predictor" and about["samples"] == 24 and about["held_out"] == 6
    assert about["verified_top"] == 4     # the whole last population measured, the best measured won
    again = SupernetAccuracy.from_checkpoint(checkpoint, "digits")     # the winner's figure, measured anew
    assert about["best_measured"] == again.measure(Candidate.from_dict(res["candidate"]))
    assert -1 <= about["held_out_spearman"] <= 1 and 0 < about["best_measured"] <= 1
    # the measurements are kept beside the checkpoint: a search of another budget reads them (the same
    # predictor samples, not measured again), and they equal a fresh measurement
    assert (checkpoint.parent / "measured.json").is_file()
    assert main(base[:4] + ["32KB"] + base[5:] + ["--accuracy", "predictor", "--predictor-samples", "24",
                                                  "--predictor-model", "ridge", "-o", str(tmp_path / "p")]) == 0
    read = json.loads((tmp_path / "p" / "search.json").read_text())["accuracy_predictor"]
    assert read["subnets_read"] >= 24 and read["held_out_spearman"] == about["held_out_spearman"]
    shared = SupernetAccuracy.from_checkpoint(checkpoint, "digits", share=True)
    c, acc = next(iter(shared.cache.items()))
    assert shared.loaded >= 24 and again.measure(c) == acc
    # another recalibration is another key: nothing read
    assert SupernetAccuracy.from_checkpoint(checkpoint, "digits", share=True, calib_batches=2).loaded == 0


@pytest.mark.parametrize("extra,message", [
    ([], "--accuracy auto: the supernet needs data: --data DIR"),
    (["--digits", "--data", "x"], "--data and --digits: give one of them"),
    (["--digits", "--supernet", "nope.pt"], "--supernet nope.pt: file not found"),
    (["--accuracy", "macs", "--supernet", "nope.pt"], "--supernet: accuracy from a supernet; not with --accuracy macs"),
    (["--digits", "--supernet", "x.pt", "--widths", "0.5"], "--widths / --resolutions: the space is the --supernet"),
    (["--data", "/nonexistent/dir", "--resolutions", "16"], "data folder /nonexistent/dir does not exist"),
    (["--digits", "--supernet-epochs", "0"], "--supernet-epochs must be at least 1, got 0"),
    (["--digits", "--predictor-samples", "4"], "--predictor-samples must be at least 8"),
])
def test_accuracy_option_errors_are_one_line(tmp_path, capsys, extra, message):
    assert main(["search", "--board", "stm32f746", "--sram", "96KB", "--flash", "1MB", *extra,
                 "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinynas: error: ") and message in err and err.count("\n") == 1


def test_finetune_keeps_the_epoch_with_the_best_validation_accuracy(measured):
    """tinynas.pipeline.finetune: early stopping by the validation split. A learning rate that wrecks the
    weights leaves the subnet as it was (epoch 0, its accuracy the supernet measurement's); a sane one keeps
    the epoch whose validation accuracy is the largest of those it reports."""
    from tinynas.pipeline import FinetuneConfig, finetune
    from tinynas.training import recalibrate_bn, resize
    c = measured.space.smallest()
    sub = measured.net.get_active_subnet(c)
    recalibrate_bn(sub, [resize(x, c.r) for x in measured.calib])
    before = {k: v.clone() for k, v in sub.state_dict().items()}
    wrecked = finetune(sub, measured.data, FinetuneConfig(epochs=2, lr=1e6))
    assert wrecked.kept_epoch == 0 and len(wrecked.val_accuracy) == 3 and len(wrecked.losses) == 2
    assert wrecked.val_accuracy[0] == measured.measure(c) > max(wrecked.val_accuracy[1:])
    assert all(torch.equal(before[k], v) for k, v in sub.state_dict().items())
    tuned = finetune(sub, measured.data, FinetuneConfig(epochs=2, lr=0.01))
    best = max(tuned.val_accuracy)
    assert tuned.val_accuracy[tuned.kept_epoch] == best and tuned.kept_epoch == max(
        i for i, a in enumerate(tuned.val_accuracy) if a == best)
    val = resize(measured.data.val_x, c.r)
    with torch.no_grad():
        assert (sub(val).argmax(1) == measured.data.val_y).float().mean().item() == pytest.approx(best)
