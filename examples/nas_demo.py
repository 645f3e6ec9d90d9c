#!/usr/bin/env python3
"""`make nas-demo`: TinyNAS end to end on the digits (8 x 8 images scaled up to 32 x 32), two budgets on
two boards.

One supernet is trained once (width 0.35, resolutions 24 / 28 / 32) and shared; then, for each (board,
budget), `tinynas search --digits --supernet ... --accuracy predictor` searches its space: the accuracy
predictor is fitted on `--predictor-samples` subnets measured on the validation split once (the first search
measures them, the others read them from measured.json beside the checkpoint), so the evolution (population
x generations, each candidate's peak SRAM / Flash / instructions from the cost model over all cores) asks
thousands of candidates; its best-predicted ones are measured before the winner is chosen. The winner is
fine-tuned, quantized through tinyengine's ONNX + calibration path, compiled, run on the emulated board
(QEMU) on the held-out images, and report.json written. A table of the runs follows: budgets, the winner,
predicted vs measured peak SRAM / Flash / instructions, the int8 accuracy on the device and the number of
candidates evaluated; then the total and the wall time.

PyTorch runs on one thread (`--threads`): its tensors here are small, and on a machine with few cores its
default (a thread per core) is about ten times slower where the cost model's worker processes or other
jobs share the cores.

    python examples/nas_demo.py [-o build/nas-demo] [--supernet-epochs 3] [--finetune-epochs 2]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import sections  # noqa: E402
from tinynas.cli import main as tinynas  # noqa: E402
from tinynas.space import SearchSpace  # noqa: E402
from tinynas.training import TrainConfig, train  # noqa: E402

# (board, peak SRAM budget, Flash budget): the Flash budgets bind on these small networks, the SRAM
# budgets leave the board's room for an application
RUNS = [("stm32f746", "16KB", "240KB"), ("stm32f746", "64KB", "320KB"),
        ("stm32f411", "32KB", "280KB"), ("stm32f411", "16KB", "220KB")]
SPACE = SearchSpace(width_mult=0.35, resolutions=(24, 28, 32))
BEGIN, END = "<!-- nas-demo:begin -->", "<!-- nas-demo:end -->"      # its section of BENCHMARKS.md


def table(rows: list[dict]) -> str:
    head = ("| board | SRAM / Flash budget | winner (r, depths) | MACs | peak SRAM predicted / measured | "
            "Flash predicted / measured | instructions predicted / measured | int8 acc. on device (float) | "
            "candidates |")
    lines = [head, "|" + " --- |" * 9]
    for r in rows:
        p, m, a = r["predicted"], r["measured"], r["accuracy"]
        b = r["budgets"]
        lines.append(
            f"| {r['board']} | {b['sram_bytes'] // 1024} KB / {b['flash_bytes'] // 1024} KB | "
            f"r{r['candidate']['r']} d{''.join(str(len(k)) for k in r['candidate']['ks'])} | {r['macs']:,} | "
            f"{p['peak_sram_bytes']:,} / {m['peak_sram_bytes']:,} | {p['flash_bytes']:,} / {m['flash_bytes']:,} "
            f"({100 * r['agreement']['flash_rel_err']:+.1f}%) | {p['instructions']:,} / {m['instructions']:,} "
            f"({100 * r['agreement']['instructions_rel_err']:+.1f}%) | {100 * a['int8_device']:.1f}% "
            f"({100 * a['float']:.1f}%) | {r['candidates_evaluated']:,} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", type=Path, default=ROOT / "build" / "nas-demo")
    ap.add_argument("--supernet-epochs", type=int, default=3)
    ap.add_argument("--finetune-epochs", type=int, default=2)
    ap.add_argument("--population", type=int, default=100)
    ap.add_argument("--generations", type=int, default=12)
    ap.add_argument("--predictor-samples", type=int, default=150)
    ap.add_argument("--threads", type=int, default=1, help="PyTorch's threads")
    ap.add_argument("--benchmarks", type=Path, default=ROOT / "BENCHMARKS.md",
                    help="the markdown file whose nas-demo section gets the table")
    args = ap.parse_args(argv)
    t0 = time.time()
    import torch
    torch.set_num_threads(args.threads)
    supernet = args.out / "supernet"
    if not (supernet / "checkpoint.pt").exists():
        print(f"== training the supernet once ({args.supernet_epochs} epochs, sandwich rule) into {supernet}",
              flush=True)
        train(TrainConfig(data="digits", out=supernet, space=SPACE, epochs=args.supernet_epochs, n_random=1))
    else:
        print(f"== reusing the supernet in {supernet}", flush=True)
    print(f"   ({time.time() - t0:.0f} s so far)", flush=True)
    rows = []
    for board, sram, flash in RUNS:
        out = args.out / f"{board}-{sram}-{flash}"
        print(f"\n== {board}: peak SRAM <= {sram}, Flash <= {flash}", flush=True)
        rc = tinynas(["search", "--board", board, "--sram", sram, "--flash", flash, "--digits", "--supernet",
                      str(supernet / "checkpoint.pt"), "--population", str(args.population), "--generations",
                      str(args.generations), "--accuracy", "predictor", "--predictor-samples",
                      str(args.predictor_samples), "--finetune-epochs", str(args.finetune_epochs), "--no-progress",
                      "-o", str(out)])
        if rc != 0:
            return rc
        report = json.loads((out / "report.json").read_text())
        report["candidates_evaluated"] = json.loads((out / "search.json").read_text())["candidates_evaluated"]
        rows.append(report)
        print(f"   ({time.time() - t0:.0f} s so far)", flush=True)
    text = table(rows)
    total = sum(r["candidates_evaluated"] for r in rows)
    print(f"\n{text}\n\n{total:,} candidates evaluated in all; {time.time() - t0:.0f} s wall time in all "
          f"(every report.json under {args.out})")
    (args.out / "summary.md").write_text(text + "\n")
    sections.write_section(args.benchmarks, "\n".join([
        BEGIN, "## TinyNAS demo: `make nas-demo` (digits 32x32, four searches, int8 on the board)", "",
        f"Written by examples/nas_demo.py ({datetime.date.today().isoformat()}): one supernet "
        f"({args.supernet_epochs} epochs: the searches show the costs, not the accuracy a longer-trained "
        f"supernet gives, for which see the TinyNAS benchmark), population {args.population} x "
        f"{args.generations} generations per search, accuracy from a predictor fitted on "
        f"{args.predictor_samples} measured subnets, {args.finetune_epochs} fine-tuning epochs. Accuracy on the "
        "test split (20% of each class, held out from training and search). "
        f"{total:,} candidates evaluated in all; {time.time() - t0:.0f} s wall time in all (without set-up), "
        f"{os.cpu_count()} cores.", "", text, END]), BEGIN, END)
    bad = [r["board"] for r in rows if not r["agreement"]["ok"]]
    if bad:
        print(f"measured figures outside the prediction's bounds on: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
