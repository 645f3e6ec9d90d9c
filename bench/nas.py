#!/usr/bin/env python3
"""TinyNAS against a hand-scaled MobileNetV2 under the same budget, int8 on the emulated board, over the
folds of a k-fold split of the digits: the TinyNAS section of BENCHMARKS.md.

    python bench/nas.py [--board stm32f746] [--sram 16KB] [--flash 240KB] [--folds 5] [--repeats 3] [--jobs 2]
                        [--supernet-epochs 20] [--finetune-epochs 10] [--accuracy supernet] [-o BENCHMARKS.md]

The digits (1797 images, 8 x 8, scaled up to 32 x 32) are cut into --folds per-class folds
(tinynas.data, `test_fraction` = 1 / folds). For each fold k, fold k is the test split: neither
network is trained on it, and the search never sees it. Of the other images, the validation split
(20 % of the data) is what the search measures candidates on; the rest trains.

- Searched: a supernet of the MCUNet space (width 0.35, resolutions 24-32) trained --supernet-epochs
  epochs on the training split (sandwich rule), `tinynas search --supernet ... --accuracy ...` under the
  budget, its winner fine-tuned --finetune-epochs epochs from the inherited weights, quantized (ONNX +
  calibration), compiled and run on the board.
- MobileNetV2: its stages (widths 24/32/64/96/160/320 after a 32 stem and a 16 first block, depths
  2/3/4/3/3/1, strides 2/2/2/1/2/1), every block k3 e6; width and resolution scaled down over a grid until
  it fits the same budget per tinynas.cost (the fitting pair with the most MACs); trained from scratch on the
  same training split for as many epochs as the searched network's weights saw (supernet + fine-tuning
  epochs), then quantized, compiled and run the same way (tinynas.pipeline.deploy).

Both int8 accuracies are the board's argmax on the fold's test images; over the folds of a split every
image is tested once, and the k-fold is repeated on --repeats seeded splits (each its own supernets,
searches and trainings). The two networks are compared image by image: per image, how many splits each
network gets it right; the images where the two counts differ are counted for each side and an exact
sign test says whether the difference is significant (p < 0.05; with one split this is McNemar's exact
test). Wins, ties and losses over the runs (split, fold) are given too.

Each run (split, fold) runs in its own process (up to --jobs at once, PyTorch on one thread each) and
writes WORK/splitS/foldK/result.json; a run whose result was made with the same settings is reused, and
a supernet interrupted mid-training resumes from its checkpoint. The
section between the markers below is replaced in place; bench/run.py keeps it.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import sections  # noqa: E402

BEGIN, END = "<!-- tinynas:begin -->", "<!-- tinynas:end -->"
MBV2_WIDTHS = (0.35, 0.3, 0.25, 0.2, 0.15, 0.1)
MBV2_RESOLUTIONS = (32, 28, 24, 20, 16)
SIGNIFICANCE = 0.05


def search_space():
    from tinynas.space import SearchSpace
    return SearchSpace(width_mult=0.35, resolutions=(24, 28, 32))


def mobilenet_v2(width: float, resolution: int, base):
    """MobileNetV2's stages as a one-network space (k3 e6 everywhere)."""
    from tinynas.space import SearchSpace
    return SearchSpace(width_mult=width, resolutions=(resolution,), kernel_sizes=(3,), expand_ratios=(6,),
                       stem_width=32, first_block_width=16, stage_widths=(24, 32, 64, 96, 160, 320),
                       stage_strides=(2, 2, 2, 1, 2, 1), stage_depths=((2,), (3,), (4,), (3,), (3,), (1,)),
                       in_channels=base.in_channels, num_classes=base.num_classes)


def scaled_mobilenet_v2(base, board: str, cons):
    """The (width, resolution) of the grid with the most MACs whose MobileNetV2 fits `cons` (tinynas.cost)."""
    from tinynas.cost import CostModel
    best = None
    for w in MBV2_WIDTHS:
        for r in MBV2_RESOLUTIONS:
            space = mobilenet_v2(w, r, base)
            c = space.largest()
            model = CostModel(space, board)
            if cons.fits(model.get_efficiency(c)) and (best is None or space.macs(c) > best[0].macs(best[1])):
                best = (space, c, model)
    if best is None:
        raise SystemExit(f"no MobileNetV2 of the grid fits {cons}")
    return best


def settings(args, r: int) -> dict:
    """What a run's result depends on: a result made with other settings is not reused."""
    return {"split_seed": args.seed + r, **{k: getattr(args, k) for k in ("board", "sram", "flash", "folds", "supernet_epochs", "finetune_epochs",
                                          "finetune_lr", "n_random", "accuracy", "scratch_lr")}}


def _fold_dir(args, r: int, k: int) -> Path:
    return args.work / f"split{args.seed + r}" / f"fold{k}"


# ---- one fold (its own process) --------------------------------------------------------------------

def run_fold(args, r: int, k: int, supernet_only: bool = False) -> dict | None:
    """Repetition r (the split's seed: --seed + r), fold k: both networks trained, deployed and tested."""
    import torch

    from tinynas.accuracy import SupernetAccuracy
    from tinynas.cli import main as tinynas, parse_bytes
    from tinynas.pipeline import FinetuneConfig, deploy
    from tinynas.search import Constraints
    from tinynas.supernet import SuperNet
    from tinynas.training import TrainConfig, train

    torch.set_num_threads(1)
    seed = args.seed + r
    fold = _fold_dir(args, r, k)
    supernet = fold / "supernet"
    cons = Constraints(parse_bytes(args.sram, "--sram"), parse_bytes(args.flash, "--flash"))
    log = supernet / "log.jsonl"
    trained = json.loads(log.read_text().splitlines()[-1])["epoch"] if log.exists() else 0
    cfg = TrainConfig(data="digits", out=supernet, space=search_space(), epochs=args.supernet_epochs,
                      n_random=args.n_random, seed=seed, test_fraction=1 / args.folds, test_fold=k, progress=False)
    if trained and (trained > args.supernet_epochs or _trained_with(supernet) != _config(cfg)):
        for f in supernet.glob("*"):           # another run's supernet
            f.unlink()
        trained = 0
    if trained != args.supernet_epochs:         # trained, or resumed where an interrupted run stopped
        print(f"== split {seed} fold {k}: training the supernet {args.supernet_epochs} epochs"
              f"{f' from epoch {trained}' if trained else ''}", flush=True)
        train(replace(cfg, resume=trained > 0))
    ckpt = supernet / "checkpoint.pt"
    if supernet_only:
        return None
    measured = SupernetAccuracy.from_checkpoint(ckpt, "digits")
    space, c, model = scaled_mobilenet_v2(measured.net.space, args.board, cons)
    print(f"== split {seed} fold {k}: MobileNetV2 scaled to width {space.width_mult:g}, resolution {c.r}: "
          f"{space.macs(c):,} MACs, {args.supernet_epochs + args.finetune_epochs} epochs from scratch", flush=True)
    torch.manual_seed(seed)
    mbv2 = deploy(SuperNet(space), c, model, measured.data, fold / "mobilenet_v2",
                  FinetuneConfig(epochs=args.supernet_epochs + args.finetune_epochs, lr=args.scratch_lr,
                                 seed=seed), cons)
    print(f"== split {seed} fold {k}: search", flush=True)
    rc = tinynas(["search", "--board", args.board, "--sram", args.sram, "--flash", args.flash, "--digits",
                  "--supernet", str(ckpt), "--accuracy", args.accuracy, "--finetune-epochs",
                  str(args.finetune_epochs), "--finetune-lr", str(args.finetune_lr), "--seed", str(seed), "--no-progress", "-o", str(fold / "searched")])
    if rc:
        raise SystemExit(f"split {seed} fold {k}: tinynas search exited {rc}")
    searched = json.loads((fold / "searched" / "report.json").read_text())
    result = {"settings": settings(args, r), "split_seed": seed, "fold": k, "mobilenet_v2_width": space.width_mult,
              "searched": searched, "mobilenet_v2": mbv2,
              "search": json.loads((fold / "searched" / "search.json").read_text())["accuracy_predictor"]}
    (fold / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


SUPERNET_KEYS = ("epochs", "n_random", "seed", "test_fraction", "test_fold", "val_fraction", "batch_size", "lr")


def _config(cfg) -> dict:
    return {k: getattr(cfg, k) for k in SUPERNET_KEYS}


def _trained_with(supernet: Path) -> dict:
    from tinynas.training import read_checkpoint
    cfg = read_checkpoint(supernet / "checkpoint.pt", "bench")["config"]
    return {k: cfg.get(k) for k in SUPERNET_KEYS}


# ---- the comparison -------------------------------------------------------------------------------

def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test (ties left out): with one split, McNemar's exact test."""
    n = wins + losses
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n)


def paired(results: list[dict]) -> dict:
    """The two networks compared image by image. Each image is tested once per split (repetition); its
    score is the number of splits a network gets it right, and the images where the two scores differ are
    counted for each side: a sign test over images, which stay independent however many splits test them
    (with one split it is McNemar's exact test). Also: wins, ties and losses over the runs (split, fold)."""
    score: dict[int, list[int]] = {}            # digit index -> [searched right, MobileNetV2 right]
    tests = right_s = right_m = 0
    runs = [0, 0, 0]                            # searched better, equal, worse on a run's test images
    for r in results:
        ps = json.loads(Path(r["searched"]["predictions"]).read_text())
        pm = json.loads(Path(r["mobilenet_v2"]["predictions"]).read_text())
        if ps["labels"] != pm["labels"] or ps.get("indices") != pm.get("indices") or "indices" not in ps:
            raise SystemExit(f"split {r['split_seed']} fold {r['fold']}: the two networks' test images differ "
                             "(or predictions.json lacks the images' indices)")
        a = sum(s == y for s, y in zip(ps["device"], ps["labels"]))
        b = sum(m == y for m, y in zip(pm["device"], pm["labels"]))
        runs[0 if a > b else 1 if a == b else 2] += 1
        for i, y, s, m in zip(ps["indices"], ps["labels"], ps["device"], pm["device"]):
            sc = score.setdefault(i, [0, 0])
            sc[0] += s == y
            sc[1] += m == y
        tests, right_s, right_m = tests + len(ps["labels"]), right_s + a, right_m + b
    better = sum(a > b for a, b in score.values())
    worse = sum(a < b for a, b in score.values())
    # the difference of the mean accuracies and its 95% interval from the per-image differences
    d = [(a - b) for a, b in score.values()]
    reps = tests / len(score)
    mean = sum(d) / len(d) / reps
    sd = math.sqrt(sum((x / reps - mean) ** 2 for x in d) / (len(d) - 1))
    half = 1.96 * sd / math.sqrt(len(d))
    return {"images": len(score), "tests": tests, "searched_correct": right_s, "mobilenet_v2_correct": right_m,
            "images_searched_better": better, "images_mobilenet_v2_better": worse, "difference": mean,
            "ci95": (mean - half, mean + half), "p_value": sign_test(better, worse),
            "runs_won": runs[0], "runs_tied": runs[1], "runs_lost": runs[2], "runs_p_value": sign_test(runs[0], runs[2])}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _run_row(r: dict) -> str:
    s, m = r["searched"], r["mobilenet_v2"]
    ps, ms = s["predicted"], s["measured"]
    c = s["candidate"]
    return (f"| {r['split_seed']} | {r['fold']} | r{c['r']} d{''.join(str(len(k)) for k in c['ks'])} | {s['macs']:,} | "
            f"{ms['peak_sram_bytes']:,} ({'=' if ms['peak_sram_bytes'] == ps['peak_sram_bytes'] else '!='}) | "
            f"{ms['flash_bytes']:,} ({100 * s['agreement']['flash_rel_err']:+.1f}%) | {ms['instructions']:,} "
            f"({100 * s['agreement']['instructions_rel_err']:+.1f}%) | {m['measured']['instructions']:,} "
            f"({100 * m['agreement']['instructions_rel_err']:+.1f}%) | {s['accuracy']['held_out_images']} | "
            f"**{_pct(s['accuracy']['int8_device'])}** | {_pct(m['accuracy']['int8_device'])} |")


def section(args, results: list[dict], cmp: dict, seconds: float) -> str:
    m = results[0]["mobilenet_v2"]
    mm = m["measured"]
    width = results[0]["mobilenet_v2_width"]
    p, lo, hi = cmp["p_value"], *cmp["ci95"]
    wins = cmp["difference"] > 0 and p < SIGNIFICANCE
    figures = (f"{100 * cmp['difference']:+.2f} points (95% interval {100 * lo:+.2f} to {100 * hi:+.2f}); "
               f"{cmp['images_searched_better']} images the searched network gets right more often, "
               f"{cmp['images_mobilenet_v2_better']} MobileNetV2, sign test p = {p:.2g}; runs won / tied / lost "
               f"{cmp['runs_won']} / {cmp['runs_tied']} / {cmp['runs_lost']} (sign test p = {cmp['runs_p_value']:.2g})")
    verdict = (f"**The searched network wins: {figures}.**" if wins else
               f"**The searched network does NOT win significantly (p < {SIGNIFICANCE}) in this run: {figures}** "
               "(reported as measured).")
    epochs = args.supernet_epochs + args.finetune_epochs
    splits = sorted({r["split_seed"] for r in results})
    per_split = []
    for sd in splits:
        rs = [r for r in results if r["split_seed"] == sd]
        n = sum(r["searched"]["accuracy"]["held_out_images"] for r in rs)
        a = sum(r["searched"]["accuracy"]["int8_device"] * r["searched"]["accuracy"]["held_out_images"] for r in rs)
        b = sum(r["mobilenet_v2"]["accuracy"]["int8_device"] * r["searched"]["accuracy"]["held_out_images"] for r in rs)
        per_split.append(f"| {sd} | all | | | | | | | {n:,} | **{_pct(a / n)}** | {_pct(b / n)} |")
    return "\n".join([
        BEGIN,
        "## TinyNAS: searched network vs hand-scaled MobileNetV2 (digits 32x32, int8 on the board)",
        "",
        f"Generated by `python bench/nas.py --repeats {args.repeats}` ({datetime.date.today().isoformat()}, "
        f"{seconds:.0f} s on this machine for what was not reused, {args.jobs} runs at a time). Board {args.board} "
        f"(QEMU), budget peak SRAM <= {args.sram}, Flash <= {args.flash}. {args.folds}-fold split of the 1,797 digits, "
        f"repeated on {len(splits)} seeded split(s): each run's test fold is held out from training, from the search "
        f"(which measures candidates on a separate validation split, 20%) and from fine-tuning; per split every "
        f"image is tested once, int8 on the board (tinyengine's ONNX + calibration path). Searched: a supernet "
        f"(width 0.35, r24-32) trained {args.supernet_epochs} epochs (sandwich rule, {args.n_random} random subnets "
        f"per step), `tinynas search --accuracy {args.accuracy}`, then {args.finetune_epochs} fine-tuning epochs of "
        f"the winner (lr {args.finetune_lr:g}). MobileNetV2 (k3 e6, width {width:g}, r{m['candidate']['r']}: the "
        f"largest of the grid that fits per tinynas.cost; {m['macs']:,} MACs, peak SRAM {mm['peak_sram_bytes']:,} B "
        f"= predicted, Flash about {mm['flash_bytes']:,} B): {epochs} epochs from scratch, lr {args.scratch_lr:g}. "
        "Both keep the epoch with the best validation accuracy. Peak SRAM: measured (= the prediction); Flash and "
        "instructions: measured, with the error of the prediction.",
        "",
        "| split | fold | searched (r, depths) | MACs | peak SRAM B | Flash B | instructions | MobileNetV2 "
        "instructions | test images | searched int8 acc. | MobileNetV2 int8 acc. |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *[_run_row(r) for r in results],
        *per_split,
        "",
        f"Over {cmp['tests']:,} tests of {cmp['images']:,} images: searched "
        f"{_pct(cmp['searched_correct'] / cmp['tests'])}, MobileNetV2 {_pct(cmp['mobilenet_v2_correct'] / cmp['tests'])}. "
        f"{verdict}",
        END,
    ])


def write_section(path: Path, text: str) -> None:
    sections.write_section(path, text, BEGIN, END)


def _reusable(args, r: int, k: int) -> dict | None:
    f = _fold_dir(args, r, k) / "result.json"
    if not f.exists():
        return None
    res = json.loads(f.read_text())
    return res if res.get("settings") == settings(args, r) else None


def _run_folds(args, argv: list[str]) -> list[dict]:
    """Every run's result (repetition, fold): reused where made with these settings, else computed by
    `--run R K` processes, up to --jobs at once."""
    runs = [(r, k) for r in range(args.repeats) for k in range(args.folds)]
    todo = [rk for rk in runs if args.supernets_only or _reusable(args, *rk) is None]
    running: list[tuple[tuple[int, int], subprocess.Popen]] = []
    while todo or running:
        while todo and len(running) < args.jobs:
            r, k = todo.pop(0)
            d = _fold_dir(args, r, k)
            d.mkdir(parents=True, exist_ok=True)
            logf = open(d / "log.txt", "a")
            print(f"split {args.seed + r} fold {k}: started (log {logf.name})", flush=True)
            running.append(((r, k), subprocess.Popen([sys.executable, __file__, *argv, "--run", str(r), str(k)],
                                                     stdout=logf, stderr=subprocess.STDOUT)))
        time.sleep(2)
        for rk, proc in list(running):
            if proc.poll() is not None:
                running.remove((rk, proc))
                if proc.returncode:
                    for _, other in running:
                        other.kill()
                    raise SystemExit(f"split {args.seed + rk[0]} fold {rk[1]} failed (exit {proc.returncode}): "
                                     f"see {_fold_dir(args, *rk) / 'log.txt'}")
                print(f"split {args.seed + rk[0]} fold {rk[1]}: done", flush=True)
    return [] if args.supernets_only else [_reusable(args, *rk) for rk in runs]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", default="stm32f746")
    ap.add_argument("--sram", default="16KB")
    ap.add_argument("--flash", default="240KB")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2, help="folds run at once (each in its own process)")
    ap.add_argument("--supernet-epochs", type=int, default=20)
    ap.add_argument("--finetune-epochs", type=int, default=10)
    ap.add_argument("--finetune-lr", type=float, default=0.05)
    ap.add_argument("--n-random", type=int, default=2, help="random subnets per supernet step (sandwich rule)")
    ap.add_argument("--accuracy", default="supernet", choices=("supernet", "predictor", "auto"))
    ap.add_argument("--scratch-lr", type=float, default=0.05, help="MobileNetV2's learning rate (as the supernet's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "bench-nas")
    ap.add_argument("--repeats", type=int, default=3,
                    help="k-fold repeated on this many splits (seeds --seed, --seed + 1, ...): more test predictions")
    ap.add_argument("--supernets-only", action="store_true", help="train every run's supernet, then stop")
    ap.add_argument("--run", type=int, nargs=2, default=None, help=argparse.SUPPRESS)
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = ap.parse_args(argv)
    if args.folds < 2 or args.jobs < 1 or args.repeats < 1:
        raise SystemExit("--folds must be at least 2, --jobs and --repeats at least 1")
    if args.run is not None:
        run_fold(args, *args.run, supernet_only=args.supernets_only)
        return 0
    t0 = time.time()
    results = _run_folds(args, argv)
    if args.supernets_only:
        return 0
    cmp = paired(results)
    text = section(args, results, cmp, time.time() - t0)
    write_section(args.output, text)
    (args.work / "comparison.json").write_text(json.dumps(cmp, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
