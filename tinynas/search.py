"""Evolutionary search over candidates within SRAM, Flash and an optional latency budget.

The search knows two interfaces and nothing else (as once-for-all's evolution finder):

- an efficiency predictor: `get_efficiency(candidate)` -> an object with `peak_sram_bytes`,
  `flash_bytes`, `instructions` (tinynas.cost.CostModel); where it also has `evaluate(candidates)`
  (batched, over processes) the search hands it each new population at once;
- an accuracy predictor: `predict_acc(candidates)` -> one score per candidate, batched
  (tinynas.accuracy: the supernet's validation accuracy, or a predictor fitted on it; or `MacsProxy`).

Evolution: a population of random candidates that fit; each generation keeps the best `parents`
fraction, and fills the rest with mutants of random parents and crossovers of two, each redrawn at most
`max_tries` times until it fits (the generation's proposals evaluated together, over processes); the
best candidate ever seen wins. Everything is drawn from one seeded `random.Random`: a seed gives the
same search.

Nothing fits: after `max_tries` random draws the search stops with a one-line NoFitError that gives
the smallest network's needs in bytes against the budget.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from .errors import TinyNasError
from .space import Candidate, SearchSpace


class NoFitError(TinyNasError):
    """No candidate of the space fits the constraints."""


@dataclass(frozen=True)
class Constraints:
    """Budgets: peak SRAM and Flash in bytes (as tinyengine's report counts them), optionally instructions."""
    sram_bytes: int
    flash_bytes: int
    max_instructions: int | None = None

    def __post_init__(self):
        for name in ("sram_bytes", "flash_bytes", "max_instructions"):
            v = getattr(self, name)
            if v is None and name == "max_instructions":
                continue
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise TinyNasError(f"constraints: {name} must be a positive integer, got {v!r}")

    def fits(self, eff) -> bool:
        return (eff.peak_sram_bytes <= self.sram_bytes and eff.flash_bytes <= self.flash_bytes
                and (self.max_instructions is None or eff.instructions <= self.max_instructions))

    def describe(self, eff) -> str:
        parts = [f"peak SRAM {eff.peak_sram_bytes} B (budget {self.sram_bytes})",
                 f"Flash {eff.flash_bytes} B (budget {self.flash_bytes})"]
        if self.max_instructions is not None:
            parts.append(f"{eff.instructions} instructions (limit {self.max_instructions})")
        return ", ".join(parts)


class MacsProxy:
    """An accuracy predictor that scores a candidate by log10 of its MACs (more compute, more accuracy):
    what MCUNet's stage 1 assumes. No supernet needed: fast runs (`tinynas search --accuracy macs`)."""

    def __init__(self, space: SearchSpace):
        self.space = space

    def predict_acc(self, cands: list[Candidate]) -> list[float]:
        return [math.log10(self.space.macs(c)) for c in cands]


@dataclass
class Result:
    candidate: Candidate
    score: float
    efficiency: object
    history: list = field(default_factory=list)     # best score after each generation
    evaluated: int = 0                              # distinct candidates whose efficiency was asked
    population: list = field(default_factory=list)  # the last population, (score, candidate), best first


class EvolutionSearch:
    def __init__(self, space: SearchSpace, efficiency, accuracy, constraints: Constraints,
                 population: int = 32, parents: float = 0.25, mutation: float = 0.5, mutate_prob: float = 0.1,
                 max_tries: int = 100, seed: int = 0):
        if population < 2:
            raise TinyNasError(f"search: population must be at least 2, got {population}")
        if not 0 < parents < 1 or not 0 <= mutation <= 1:
            raise TinyNasError(f"search: parents must be in (0, 1) and mutation in [0, 1], got {parents}, {mutation}")
        self.space, self.efficiency, self.accuracy = space, efficiency, accuracy
        self.constraints = constraints
        self.population, self.parents, self.mutation, self.mutate_prob = population, parents, mutation, mutate_prob
        self.max_tries = max_tries
        self.rng = random.Random(seed)
        self.seen: set = set()

    def _fits(self, c: Candidate) -> bool:
        self.seen.add(c)
        return self.constraints.fits(self.efficiency.get_efficiency(c))

    def _draw_all(self, makers: list) -> list[Candidate]:
        """One child per maker where one fits: a proposal for every open slot at once, evaluated
        together (over processes, `_prefetch`), redrawn where it does not fit, at most max_tries rounds."""
        chosen: list = [None] * len(makers)
        for _ in range(self.max_tries):
            todo = [i for i, c in enumerate(chosen) if c is None]
            if not todo:
                break
            proposals = {i: makers[i]() for i in todo}
            self._prefetch(list(proposals.values()))
            for i, c in proposals.items():
                if self._fits(c):
                    chosen[i] = c
        return [c for c in chosen if c is not None]

    def _prefetch(self, cands: list[Candidate]) -> None:
        evaluate = getattr(self.efficiency, "evaluate", None)
        if evaluate is not None:
            evaluate(cands)

    def initial(self) -> list[Candidate]:
        """`population` random candidates that fit (drawn in batches, evaluated together)."""
        pop: list = []
        tries = 0
        while len(pop) < self.population:
            if tries >= self.max_tries * self.population:
                break
            batch = [self.space.sample(self.rng) for _ in range(self.population - len(pop))]
            tries += len(batch)
            self._prefetch(batch)
            pop += [c for c in batch if self._fits(c)]
        if not pop:
            small = self.efficiency.get_efficiency(self.space.smallest())
            if self.constraints.fits(small):
                pop = [self.space.smallest()]
            else:
                raise NoFitError(f"no network fits: the smallest of the space needs "
                                 f"{self.constraints.describe(small)} ({tries} random candidates tried)")
        return pop

    def run(self, generations: int, progress=None) -> Result:
        """The search; `progress(generation, best_score)` is called after the first population and each
        generation (a progress bar, say)."""
        pop = self.initial()
        scores = self.accuracy.predict_acc(pop)
        best = max(zip(scores, pop), key=lambda sc: sc[0])
        history = [best[0]]
        if progress is not None:
            progress(0, best[0])
        n_parents = max(1, int(round(self.population * self.parents)))
        n_mutants = int(round(self.population * self.mutation))
        for _ in range(generations):
            ranked = sorted(zip(scores, pop), key=lambda sc: -sc[0])[:n_parents]
            parents = [c for _, c in ranked]
            mutant = lambda: self.space.mutate(self.rng.choice(parents), self.rng, self.mutate_prob)  # noqa: E731
            cross = lambda: self.space.crossover(self.rng.choice(parents), self.rng.choice(parents),  # noqa: E731
                                                 self.rng)
            children = self._draw_all([mutant if i < n_mutants else cross
                                       for i in range(self.population - len(parents))])
            child_scores = self.accuracy.predict_acc(children) if children else []
            pop = parents + children
            scores = [s for s, _ in ranked] + list(child_scores)
            gen_best = max(zip(scores, pop), key=lambda sc: sc[0])
            if gen_best[0] > best[0]:
                best = gen_best
            history.append(best[0])
            if progress is not None:
                progress(len(history) - 1, best[0])
        final = sorted(zip(scores, pop), key=lambda sc: -sc[0])
        return Result(best[1], best[0], self.efficiency.get_efficiency(best[1]), history, len(self.seen), final)
