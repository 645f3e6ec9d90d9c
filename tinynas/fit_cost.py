"""Fit tinynas.cost's code-size and instruction models on real builds: `python -m tinynas.fit_cost`.

For each board, a handful of seeded candidates of a small space (and a few of a narrow one) are lowered, compiled, built and run
under QEMU twice: plainly (measured Flash and total instructions, as `tinyengine run` reports them) and
with `profile=True` (per-layer instruction counts). Then, by least squares:

- code bytes = Flash - the report's constant bytes = base + per_layer x layers;
- per kernel key (`cost.layer_keys`) and per op: layer instructions = `cost.fitted_layers`' features . w
  (a fused expand's with its depthwise partner's);
- instructions_base: the mean of (total - the sum of the layers), what te_invoke does around them.

The result goes to tinynas/cost_fit.json (or --out), one entry per board, with the candidates it saw
(`samples`, each with the name of its space in `spaces`).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import tinyengine as te

from .cost import FIT_PATH, fitted_layers
from .lower import lower
from .space import SearchSpace

# small enough to run quickly under QEMU, varied enough to see every kernel of the space
FIT_SPACE = SearchSpace(width_mult=0.35, resolutions=(24, 32, 48, 64, 80))
# narrow networks on small grey images, MobileNetV2's stages at width 0.25 (8-channel stem and first
# block, expanded layers of 48 to 240 channels on 1 x 1 to 4 x 4 maps): the size of network a 16 KB
# board takes (bench/nas.py's MobileNetV2 baseline), which FIT_SPACE's samples rarely reach
NARROW_SPACE = SearchSpace(width_mult=0.25, resolutions=(24, 32, 40), stage_widths=(24, 32, 64, 96, 160, 320),
                           in_channels=1)
# the spaces of the fitted candidates by the names their samples give (every other FIT_SPACE sample is grey:
# the stem's kernel differs with one input channel)
SPACES = {"fit": FIT_SPACE, "fit_grey": replace(FIT_SPACE, in_channels=1), "narrow": NARROW_SPACE}


def measure(space: SearchSpace, c, board: str, work: Path, patch: bool = False) -> dict:
    """One candidate built and run plainly and with profiling: the figures the fit needs."""
    opts = dict(board=board, patch="auto" if patch else None)
    graph = lower(space, c)
    plain = te.compile_graph(graph, te.CompileOptions(**opts))
    report = te.write_project(plain, work / "plain")
    records = te.random_records(plain.graph, 1, seed=0)
    result = te.build_and_run(plain, work / "plain", records)
    prof = te.compile_graph(lower(space, c), te.CompileOptions(profile=True, **opts))
    te.write_project(prof, work / "prof")
    counts = te.build_and_run(prof, work / "prof", records).layer_counts
    layers = fitted_layers(prof.graph, prof.plan)
    return {"candidate": c.to_dict(), "space": next(n for n, s in SPACES.items() if s == space), "patch": patch,
            "layers": len(plain.graph.nodes),
            "flash_bytes": report["flash_bytes"], "const_bytes": report["const_bytes"],
            "instructions": result.instructions,
            "per_layer": [{"key": k, "op": n.op, "features": f, "count": int(n_)}
                          for (k, f), n, n_ in zip(layers, prof.graph.nodes, counts)]}


def _lstsq(rows: list, targets: list) -> list[float]:
    """Non-negative least squares of the relative error: every feature costs instructions, none saves
    any, and a layer of 10,000 instructions weighs as much as one of 1,000,000, so the fit also holds
    outside the sizes it saw (an unconstrained fit of the absolute error went negative on small maps and
    far too high on 1 x 1 maps)."""
    from scipy.optimize import nnls
    a = np.asarray(rows, np.float64)
    b = np.asarray(targets, np.float64)
    weight = 1.0 / np.maximum(np.abs(b), 1.0)
    a, b = a * weight[:, None], b * weight
    scale = np.maximum(np.abs(a).max(axis=0), 1e-12)     # columns of very different magnitudes
    w, _ = nnls(a / scale, b, maxiter=50 * a.shape[1])
    return [float(x) for x in w / scale]


def fit(samples: list[dict]) -> dict:
    code = _lstsq([[1.0, s["layers"]] for s in samples], [s["flash_bytes"] - s["const_bytes"] for s in samples])
    by_key: dict = {}
    by_op: dict = {}
    op_of: dict[str, str] = {}
    for s in samples:
        for layer in s["per_layer"]:
            by_key.setdefault(layer["key"], ([], []))
            by_key[layer["key"]][0].append(layer["features"])
            by_key[layer["key"]][1].append(layer["count"])
            op_of[layer["key"]] = layer["op"]
    # per op, its layers that run alone (a fused depthwise layer costs a few instructions: the pair's work
    # is its expand's), or all of them where it never runs alone
    for key, (rows, counts) in by_key.items():
        op = op_of[key]
        alone = not key.startswith(("fused:", "patch:"))
        have = by_op.setdefault(op, {True: ([], []), False: ([], [])})[alone]
        have[0].extend(rows)
        have[1].extend(counts)
    by_op = {op: t[True] if t[True][0] else t[False] for op, t in by_op.items()}
    base = float(np.mean([s["instructions"] - sum(layer["count"] for layer in s["per_layer"]) for s in samples]))
    return {"code": {"base": code[0], "per_layer": code[1]},
            "instructions": {k: _lstsq(*v) for k, v in sorted(by_key.items())},
            "instructions_by_op": {k: _lstsq(*v) for k, v in sorted(by_op.items())},
            "instructions_base": base,
            "samples": [{k: s[k] for k in ("candidate", "space", "patch", "flash_bytes", "const_bytes",
                                                "instructions")}
                        for s in samples]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tinynas.fit_cost", description=__doc__.splitlines()[0])
    ap.add_argument("--board", action="append", help="board(s) to fit (default: stm32f746 and stm32f411)")
    ap.add_argument("--candidates", type=int, default=10)
    ap.add_argument("--patched", type=int, default=4, help="of them, how many also with --patch auto")
    ap.add_argument("--narrow", type=int, default=4, help="seeded candidates of the narrow space besides")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=FIT_PATH)
    args = ap.parse_args(argv)
    boards = args.board or ["stm32f746", "stm32f411"]
    fits = json.loads(args.out.read_text()) if args.out.exists() else {}
    for board in boards:
        if not te.toolchain_available(te.get_board(board)):
            print(f"fit_cost: no toolchain for {board}", file=sys.stderr)
            return 2
        rng = random.Random(args.seed)
        # the largest and smallest networks first, then seeded samples; those that do not fit the
        # board's Flash are left out (bounded: 4 draws per wanted candidate)
        # every other sampled candidate with one input channel
        draws = [(FIT_SPACE, FIT_SPACE.largest()), (FIT_SPACE, FIT_SPACE.smallest())] + \
            [(SPACES["fit_grey"] if i % 2 else FIT_SPACE, FIT_SPACE.sample(rng)) for i in range(4 * args.candidates)]
        narrow_rng = random.Random(args.seed + 1)
        groups = [(draws, args.candidates),
                  ([(NARROW_SPACE, NARROW_SPACE.sample(narrow_rng)) for _ in range(4 * args.narrow)], args.narrow)]
        samples, fitted = [], []
        with tempfile.TemporaryDirectory() as tmp:
            for draws, wanted in groups:
                taken = 0
                for space, c in draws:
                    if taken == wanted:
                        break
                    try:
                        samples.append(measure(space, c, board, Path(tmp) / str(len(samples))))
                    except te.FitError as exc:
                        print(f"{board}: left out ({exc})", flush=True)
                        continue
                    fitted.append((space, c))
                    taken += 1
                    print(f"{board} {len(samples)}: flash {samples[-1]['flash_bytes']} instructions "
                          f"{samples[-1]['instructions']}", flush=True)
            for space, c in fitted[:args.patched]:
                samples.append(measure(space, c, board, Path(tmp) / f"patch{len(samples)}", patch=True))
                print(f"{board} {len(samples)} (patch): instructions {samples[-1]['instructions']}", flush=True)
        fits[board] = {"space": FIT_SPACE.to_dict(), "spaces": {n: s.to_dict() for n, s in SPACES.items()},
                       **fit(samples)}
    args.out.write_text(json.dumps(fits, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
