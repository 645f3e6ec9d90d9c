"""tinynas.search: the evolutionary search over two interfaces (seeded, constraints kept, bounded retries
with a one-line error), and with tinyengine's cost model: patches let it return a network that only fits
with them, whose compiled report has exactly the predicted peak SRAM."""
import random
from dataclasses import dataclass

import pytest

import tinyengine as te
from tinynas.cost import CostModel
from tinynas.lower import lower
from tinynas.search import Constraints, EvolutionSearch, MacsProxy, NoFitError
from tinynas.errors import TinyNasError
from tinynas.space import SearchSpace

SPACE = SearchSpace()


@dataclass(frozen=True)
class Eff:
    peak_sram_bytes: int
    flash_bytes: int
    instructions: int


class Analytic:
    """A stand-in efficiency predictor: SRAM from the resolution, Flash from the parameters."""
    def __init__(self, space):
        self.space, self.calls = space, 0

    def get_efficiency(self, c):
        self.calls += 1
        return Eff(c.r * c.r * 8, self.space.params(c), self.space.macs(c) // 10)


def test_search_is_seeded_keeps_constraints_and_improves():
    cons = Constraints(sram_bytes=128 * 128 * 8, flash_bytes=2_000_000)
    eff = Analytic(SPACE)
    runs = [EvolutionSearch(SPACE, eff, MacsProxy(SPACE), cons, population=16, seed=3).run(6) for _ in range(2)]
    assert runs[0].candidate == runs[1].candidate and runs[0].history == runs[1].history
    res = runs[0]
    assert cons.fits(res.efficiency)
    assert res.history == sorted(res.history) and res.history[-1] > res.history[0]
    # better than the best of as many random fitting draws
    rng = random.Random(0)
    fitting = [c for c in (SPACE.sample(rng) for _ in range(400)) if cons.fits(eff.get_efficiency(c))][:res.evaluated]
    assert res.score >= max(MacsProxy(SPACE).predict_acc(fitting))
    other = EvolutionSearch(SPACE, eff, MacsProxy(SPACE), cons, population=16, seed=4).run(6)
    assert other.history != res.history


def test_latency_limit_is_kept():
    cons = Constraints(sram_bytes=10**9, flash_bytes=10**9, max_instructions=3_000_000)
    res = EvolutionSearch(SPACE, Analytic(SPACE), MacsProxy(SPACE), cons, population=8, seed=0).run(3)
    assert res.efficiency.instructions <= 3_000_000


def test_nothing_fits_is_a_bounded_one_line_error():
    eff = Analytic(SPACE)
    cons = Constraints(sram_bytes=1000, flash_bytes=10**9)
    with pytest.raises(NoFitError) as exc:
        EvolutionSearch(SPACE, eff, MacsProxy(SPACE), cons, population=4, max_tries=5).run(2)
    msg = str(exc.value)
    assert "\n" not in msg and f"peak SRAM {96 * 96 * 8} B (budget 1000)" in msg
    assert eff.calls <= 4 * 5 + 1
    with pytest.raises(TinyNasError, match="sram_bytes must be a positive integer"):
        Constraints(sram_bytes=0, flash_bytes=1)


HIGH = SearchSpace(width_mult=0.35, resolutions=(128,), stage_widths=(24, 40, 80), stage_strides=(2, 2, 2),
                   stage_depths=((1, 2), (1, 2), (1,)))


def test_with_patches_the_search_returns_a_network_that_fits_only_with_them(tmp_path):
    budget = Constraints(sram_bytes=95_000, flash_bytes=1_000_000)
    plain = CostModel(HIGH, "stm32f746")
    with pytest.raises(NoFitError, match=r"smallest of the space needs peak SRAM \d+ B \(budget 95000\)"):
        EvolutionSearch(HIGH, plain, MacsProxy(HIGH), budget, population=3, max_tries=3).run(1)
    patched = CostModel(HIGH, "stm32f746", patch=True, sram_budget=budget.sram_bytes)
    res = EvolutionSearch(HIGH, patched, MacsProxy(HIGH), budget, population=3, max_tries=4, seed=1).run(1)
    eff = res.efficiency
    assert eff.patch is not None and budget.fits(eff)
    assert plain.get_efficiency(res.candidate).peak_sram_bytes > budget.sram_bytes
    compiled = te.compile_graph(lower(HIGH, res.candidate), patched.options(eff))
    report = te.write_project(compiled, tmp_path / "p")
    assert report["peak_sram_bytes"] == eff.peak_sram_bytes <= budget.sram_bytes
