#!/usr/bin/env python3
"""How fast tinynas' cost model (tinynas.cost.CostModel.get_efficiency) evaluates candidates.

    python bench/nas_speed.py [--board stm32f746] [--patch] [--width 1.0] [--resolutions 96,112,128,144,160]
                              [--count 40] [--warmup 80] [--minutes 1] [--processes N] [--json FILE]

Two figures:

- per core: candidates per second of CPU time in this one process, on --count random candidates of
  the space, first with empty caches (cold), then again on --count others after --warmup candidates
  (warm: the model keeps each layer it prepared and each table it packed, and a search's candidates
  share most of their layers);
- all cores: how many candidates a search's stream evaluates in --minutes of wall time with
  CostModel.evaluate over --processes workers (default: all cores): a population of random
  candidates, then generation after generation of mutants and crossovers of random members of the
  previous one, each generation evaluated at once, as the evolutionary search does.

Neither figure depends on the budgets: every candidate is planned whether or not it fits.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tinynas.cost import CostModel  # noqa: E402
from tinynas.space import SearchSpace  # noqa: E402


def per_core(space: SearchSpace, board: str, patch: bool, count: int, warmup: int, seed: int) -> dict:
    """Candidates per CPU second in this process, cold and warm (see the module)."""
    model = CostModel(space, board, patch=patch)
    rng = random.Random(seed)

    def rate(n: int) -> float:
        cands = [space.sample(rng) for _ in range(n)]
        t = time.process_time()
        for c in cands:
            model.get_efficiency(c)
        return n / (time.process_time() - t)

    cold = rate(count)
    for _ in range(warmup):
        model.get_efficiency(space.sample(rng))
    return {"cold_per_s": round(cold, 2), "warm_per_s": round(rate(count), 2),
            "layers_cached": len(model._layers)}


def search_stream(space: SearchSpace, board: str, patch: bool, minutes: float, processes: int,
                  population: int, seed: int) -> dict:
    """Distinct candidates a search's stream evaluates in `minutes` on `processes` workers."""
    model = CostModel(space, board, patch=patch)
    rng = random.Random(seed)
    pop = [space.sample(rng) for _ in range(population)]
    seen: set = set()
    start = time.perf_counter()
    end = start + 60 * minutes
    while True:
        model.evaluate(pop, processes)
        seen.update(pop)
        if time.perf_counter() >= end:
            break
        pop = [space.mutate(rng.choice(pop), rng) if rng.random() < 0.5
               else space.crossover(rng.choice(pop), rng.choice(pop), rng) for _ in range(population)]
    wall = time.perf_counter() - start
    model.close()
    return {"candidates": len(seen), "seconds": round(wall, 1), "processes": processes,
            "per_s": round(len(seen) / wall, 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--board", default="stm32f746")
    ap.add_argument("--patch", action="store_true", help="let the plans use a patch-based first stage")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--resolutions", default=None, help="comma-separated (default: the space's)")
    ap.add_argument("--count", type=int, default=40, help="candidates timed per per-core figure")
    ap.add_argument("--warmup", type=int, default=80, help="candidates evaluated between cold and warm")
    ap.add_argument("--minutes", type=float, default=1.0, help="wall time of the all-cores figure (0: skip)")
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--population", type=int, default=64, help="candidates per generation of the stream")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args(argv)
    res = {} if args.resolutions is None else {"resolutions": tuple(int(r) for r in args.resolutions.split(","))}
    space = SearchSpace(width_mult=args.width, **res)
    out = {"board": args.board, "patch": args.patch, "width_mult": args.width,
           "resolutions": list(space.resolutions)}
    out["per_core"] = per_core(space, args.board, args.patch, args.count, args.warmup, args.seed)
    pc = out["per_core"]
    print(f"{args.board}{' --patch' if args.patch else ''}, w{args.width:g} r{','.join(map(str, space.resolutions))}: "
          f"{pc['cold_per_s']} candidates/s per core cold, {pc['warm_per_s']} warm "
          f"(after {args.count + args.warmup} candidates, {pc['layers_cached']} layers cached)")
    if args.minutes > 0:
        out["all_cores"] = search_stream(space, args.board, args.patch, args.minutes, args.processes,
                                         args.population, args.seed)
        ac = out["all_cores"]
        print(f"search stream on {ac['processes']} processes: {ac['candidates']} candidates in "
              f"{ac['seconds']} s ({ac['per_s']}/s; {int(ac['per_s'] * 60)} per minute)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
