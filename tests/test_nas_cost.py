"""tinynas.cost: peak SRAM predicted exactly as tinyengine's report states it (layer by layer and with
patches, two boards, different budgets), Flash within 3% and instructions within 10% of QEMU's
measurements on candidates the fit never saw, and one-line errors."""
import random

import pytest

import tinyengine as te
from tinynas.cost import CostModel, load_fit
from tinynas.errors import TinyNasError
from tinynas.fit_cost import FIT_SPACE
from tinynas.lower import lower
from tinynas.space import Candidate, SearchSpace

SMALL = SearchSpace(width_mult=0.35, resolutions=(48, 64, 80))


def _compiled_report(model: CostModel, c, out):
    compiled = te.compile_graph(lower(model.space, c, seed=model.seed), model.options(model.get_efficiency(c)))
    return compiled, te.write_project(compiled, out)


@pytest.mark.parametrize("board,patch,limit", [("stm32f746", False, None), ("stm32f411", False, None),
                                               ("stm32f746", True, 32_000), ("stm32f411", True, 22_000)])
def test_peak_sram_is_the_reports_exactly(tmp_path, board, patch, limit):
    model = CostModel(SMALL, board, patch=patch, sram_budget=limit)
    rng = random.Random(7 if patch else 3)
    seen_patch = []
    for i in range(2):
        c = SMALL.sample(rng)
        eff = model.get_efficiency(c)
        compiled, report = _compiled_report(model, c, tmp_path / str(i))
        assert eff.peak_sram_bytes == report["peak_sram_bytes"]
        assert eff.arena_bytes == report["arena_bytes"]
        assert eff.macs == report["macs"]
        assert eff.patch == (compiled.plan.patch.spec() if compiled.plan.patch is not None else None)
        assert abs(eff.const_bytes - report["const_bytes"]) <= 0.01 * report["const_bytes"]
        plain = CostModel(SMALL, board).get_efficiency(c)
        if eff.patch is not None:      # patches only where layer by layer misses the budget, and smaller
            assert patch and plain.peak_sram_bytes > limit and eff.peak_sram_bytes < plain.peak_sram_bytes
            seen_patch.append(eff.patch)
        else:
            assert eff == plain
    if patch:
        assert seen_patch, "the budget was meant to need patches for these candidates"


def test_cache_and_processes_give_the_same_figures():
    model = CostModel(SMALL, "stm32f746")
    rng = random.Random(5)
    cands = [SMALL.sample(rng) for _ in range(3)]
    spread = model.evaluate(cands + cands[:1], processes=2)
    serial = CostModel(SMALL, "stm32f746")
    assert spread == [serial.get_efficiency(c) for c in cands + cands[:1]]
    assert model.get_efficiency(cands[0]) is spread[0]          # cached


def test_errors_are_one_line():
    with pytest.raises(TinyNasError, match="board: .*stm32f999") as exc:
        CostModel(SMALL, "stm32f999")
    assert "\n" not in str(exc.value)
    with pytest.raises(TinyNasError, match="no fit for board host"):
        load_fit("host")


@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize("board", ["stm32f746", "stm32f411"])
def test_flash_and_instructions_within_bounds_of_qemu(tmp_path, board):
    """Candidates the fit did not see (other seeds; one with patches): Flash within 3%, instructions
    within 10% of the built firmware's; the QEMU-measured peak SRAM (static SRAM + the stack used) stays
    within the prediction (which reserves the board's whole stack allowance)."""
    fitted = {Candidate.from_dict(s["candidate"]) for s in load_fit(board)["samples"]}
    rng = random.Random(101)
    cases = [(FIT_SPACE.sample(rng), False), (FIT_SPACE.sample(rng), True)]
    for i, (c, patch) in enumerate(cases):
        assert c not in fitted
        model = CostModel(FIT_SPACE, board, patch=patch)
        eff = model.get_efficiency(c)
        compiled, report = _compiled_report(model, c, tmp_path / str(i))
        result = te.build_and_run(compiled, tmp_path / str(i), te.random_records(compiled.graph, 1, seed=0))
        assert (eff.patch is not None) == patch
        assert abs(eff.flash_bytes - compiled.report["flash_bytes"]) <= 0.03 * compiled.report["flash_bytes"]
        assert abs(eff.instructions - result.instructions) <= 0.10 * result.instructions
        assert compiled.report["peak_sram_bytes"] <= eff.peak_sram_bytes
