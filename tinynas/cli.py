"""The `tinynas` command: `tinynas search --board B --sram 128KB --flash 512KB [--patch] -o out/`.

What exists of the end-to-end search (issue 14): the search-space optimization over the `--widths` x
`--resolutions` grid (MCUNet stage 1: table and CDF plot), then the evolutionary search in the chosen
sub-space with tinyengine's cost model; the accuracy is MACs for now (tinynas.search.MacsProxy) until
the supernet's accuracy predictor is plugged in. Writes out/search.json, out/space.md, out/space_cdf.png.
With `--data` (digits or DIR/<class>/<image>), the winner is fine-tuned from a supernet (`--supernet DIR`,
or one trained into out/supernet), quantized, compiled and run on the board (tinynas.pipeline):
out/report.json, out/model.onnx, out/candidate.json, out/project/.
Bad input: one line on stderr, exit code 2.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import tinyengine as te

from .cost import CostModel, board_of
from .errors import TinyNasError
from .search import Constraints, EvolutionSearch, MacsProxy
from .space import SearchSpace
from .space_opt import optimize_space

_UNITS = {"": 1, "B": 1, "KB": 1024, "KIB": 1024, "MB": 1024 * 1024, "MIB": 1024 * 1024}


def parse_bytes(text: str, option: str) -> int:
    """'128KB', '512kb', '1MB', '65536' -> bytes (KB = 1024 bytes)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).upper() not in _UNITS:
        raise TinyNasError(f"{option}: expected a size such as 128KB, 1MB or 65536, got {text!r}")
    value = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if value <= 0:
        raise TinyNasError(f"{option}: must be positive, got {text!r}")
    return value


def _numbers(text: str, option: str, kind):
    try:
        values = tuple(kind(v) for v in text.split(","))
    except ValueError:
        raise TinyNasError(f"{option}: expected comma-separated numbers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise TinyNasError(f"{option}: expected positive numbers, got {text!r}")
    return values


def search(args) -> int:
    board = board_of(args.board)
    cons = Constraints(parse_bytes(args.sram, "--sram"), parse_bytes(args.flash, "--flash"), args.max_instructions)
    deploy = None
    if args.data:                     # the data and the supernet are checked before the search
        from .pipeline import Deployment
        deploy = Deployment.from_args(args)
    base = deploy.base_space if deploy else SearchSpace(num_classes=args.classes)
    widths = _numbers(args.widths, "--widths", float) if args.widths else (base.width_mult if deploy else (0.35, 0.5))
    widths = widths if isinstance(widths, tuple) else (widths,)
    resolutions = _numbers(args.resolutions, "--resolutions", int) if args.resolutions else \
        (base.resolutions if deploy else (96, 128))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    choice = optimize_space(base, widths, resolutions, board.name, cons, samples=args.samples, patch=args.patch,
                            seed=args.seed)
    (out / "space.md").write_text(choice.table() + "\n")
    choice.plot(out / "space_cdf.png")
    space = choice.space(base)
    if deploy:
        deploy.prepare(space, out)
    model = CostModel(space, board.name, patch=args.patch, sram_budget=cons.sram_bytes)
    res = EvolutionSearch(space, model, MacsProxy(space), cons, population=args.population,
                          seed=args.seed).run(args.generations)
    evaluated = sum(s.sampled for s in choice.subspaces) + res.evaluated
    result = {"board": board.name, "constraints": cons.__dict__, "patch": args.patch,
              "space": space.to_dict(), "candidate": res.candidate.to_dict(), "macs": space.macs(res.candidate),
              "predicted": res.efficiency.to_dict(), "accuracy_predictor": "MACs (MacsProxy)",
              "history": res.history, "candidates_evaluated": evaluated, "seconds": round(time.time() - t0, 1)}
    (out / "search.json").write_text(json.dumps(result, indent=2) + "\n")
    print(choice.table())
    e = res.efficiency
    print(f"best on {board.name}: w{choice.best.width_mult:g} r{choice.best.resolution}, {result['macs']:,} MACs, "
          f"peak SRAM {e.peak_sram_bytes:,} B, Flash {e.flash_bytes:,} B, {e.instructions:,} instructions"
          f"{', patches ' + e.patch if e.patch else ''} ({evaluated} candidates in {result['seconds']} s); "
          f"wrote {out / 'search.json'}")
    if deploy:
        deploy.run(res.candidate, model, cons, out)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="tinynas", description="Search networks that fit a microcontroller.")
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("search", help="space optimization + evolutionary search within SRAM / Flash budgets")
    s.add_argument("--board", required=True)
    s.add_argument("--sram", required=True, help="peak SRAM budget, e.g. 128KB")
    s.add_argument("--flash", required=True, help="Flash budget, e.g. 512KB")
    s.add_argument("--max-instructions", type=int, default=None, help="latency limit in instructions")
    s.add_argument("--patch", action="store_true", help="allow patch-based inference of the first stage")
    s.add_argument("--widths", help="width multipliers of stage 1 (default 0.35,0.5; with --data the supernet's)")
    s.add_argument("--resolutions", help="resolutions of stage 1 (default 96,128; with --data the supernet's)")
    s.add_argument("--data", help="'digits' or DIR/<class>/<image>: fine-tune, quantize, compile and run the winner "
                                  "on the board, out/report.json")
    s.add_argument("--supernet", help="a trained supernet folder (python -m tinynas.supernet train; default: one is "
                                      "trained into out/supernet on the chosen width)")
    s.add_argument("--supernet-epochs", type=int, default=10)
    s.add_argument("--finetune-epochs", type=int, default=3)
    s.add_argument("--samples", type=int, default=20, help="networks sampled per (width, resolution)")
    s.add_argument("--population", type=int, default=16)
    s.add_argument("--generations", type=int, default=5)
    s.add_argument("--classes", type=int, default=10)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("-o", "--out", default="tinynas_out")
    args = ap.parse_args(argv)
    return te.run_command("tinynas", lambda: search(args), user_errors=(TinyNasError,))


if __name__ == "__main__":
    sys.exit(main())
