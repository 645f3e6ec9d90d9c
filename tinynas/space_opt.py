"""Search-space optimization (MCUNet's stage 1): which (width multiplier, resolution) to search in.

For each pair of the grid, `samples` seeded random networks of that sub-space (the base space with the
width multiplier and the one resolution) are costed with tinyengine (`tinynas.cost`), those within
the constraints are kept, and the sub-space whose feasible networks have the largest MACs is chosen:
the CDF rule (a distribution further right, i.e. more compute within the same budget, is taken as
likelier to hold accurate networks); compared by the mean MACs of the feasible networks. A sub-space
none of whose samples fits is out. The result has a table and, with matplotlib, a PNG of the CDFs.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path

from .cost import CostModel
from .errors import TinyNasError
from .search import Constraints, NoFitError
from .space import SearchSpace


@dataclass
class SubSpace:
    width_mult: float
    resolution: int
    sampled: int
    feasible_macs: list          # MACs of the sampled networks that fit, sorted

    @property
    def fraction(self) -> float:
        return len(self.feasible_macs) / self.sampled

    @property
    def mean_macs(self) -> float:
        return sum(self.feasible_macs) / len(self.feasible_macs) if self.feasible_macs else 0.0


@dataclass
class SpaceChoice:
    best: SubSpace
    subspaces: list

    def space(self, base: SearchSpace) -> SearchSpace:
        return replace(base, width_mult=self.best.width_mult, resolutions=(self.best.resolution,))

    def table(self) -> str:
        lines = ["| width | resolution | fit / sampled | mean MACs of those that fit | chosen |",
                 "| ---: | ---: | ---: | ---: | :---: |"]
        for s in self.subspaces:
            lines.append(f"| {s.width_mult:g} | {s.resolution} | {len(s.feasible_macs)} / {s.sampled} | "
                         f"{s.mean_macs / 1e6:.2f} M | {'yes' if s is self.best else ''} |")
        return "\n".join(lines)

    def plot(self, path) -> Path:
        """The CDF of the feasible networks' MACs of each sub-space, as a PNG."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for s in self.subspaces:
            if not s.feasible_macs:
                continue
            xs = [m / 1e6 for m in s.feasible_macs]
            ys = [(i + 1) / len(xs) for i in range(len(xs))]
            ax.step(xs, ys, where="post", linewidth=2.5 if s is self.best else 1.0,
                    label=f"w{s.width_mult:g}-r{s.resolution}" + (" (chosen)" if s is self.best else ""))
        ax.set_xlabel("MACs of the networks that fit (M)")
        ax.set_ylabel("cumulative probability")
        ax.set_title("Search-space optimization: MACs CDF per (width, resolution)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def optimize_space(base: SearchSpace, widths, resolutions, board: str, constraints: Constraints,
                   samples: int = 100, patch: bool = False, seed: int = 0, processes: int | None = None) -> SpaceChoice:
    """The grid's sub-spaces with their feasible MACs, and the one the CDF rule picks (see the module)."""
    if not isinstance(samples, int) or samples < 1:
        raise TinyNasError(f"space optimization: samples must be a positive integer, got {samples!r}")
    subs = []
    for w in widths:
        for r in resolutions:
            space = replace(base, width_mult=w, resolutions=(r,))
            model = CostModel(space, board, patch=patch, sram_budget=constraints.sram_bytes)
            rng = random.Random(f"{seed}-{w}-{r}")
            cands = [space.sample(rng) for _ in range(samples)]
            effs = model.evaluate(cands, processes)
            macs = sorted(space.macs(c) for c, e in zip(cands, effs) if constraints.fits(e))
            subs.append(SubSpace(w, r, samples, macs))
    feasible = [s for s in subs if s.feasible_macs]
    if not feasible:
        budget = f"peak SRAM {constraints.sram_bytes} B and Flash {constraints.flash_bytes} B"
        if constraints.max_instructions is not None:
            budget = (f"peak SRAM {constraints.sram_bytes} B, Flash {constraints.flash_bytes} B and "
                      f"{constraints.max_instructions} instructions")
        raise NoFitError(f"no network of any (width, resolution) sampled fits {budget} on {board} ({samples} per "
                         f"pair); try smaller widths or resolutions")
    return SpaceChoice(max(feasible, key=lambda s: s.mean_macs), subs)
