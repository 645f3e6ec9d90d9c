"""tinynas.space_opt: MCUNet's stage 1 over a small (width, resolution) grid with tinyengine's costs:
the chosen sub-space has the largest mean MACs among those whose networks fit, a tight budget rules the
large ones out, the table and the PNG are written, and a budget nothing fits is a one-line error."""
from dataclasses import replace

import pytest

from tinynas.cost import CostModel
from tinynas.search import Constraints, NoFitError
from tinynas.space import SearchSpace
from tinynas.space_opt import optimize_space

BASE = SearchSpace(stage_widths=(24, 40, 80), stage_strides=(2, 2, 2), stage_depths=((1, 2), (1, 2), (1,)))


def test_cdf_rule_picks_the_largest_feasible_space(tmp_path):
    cons = Constraints(sram_bytes=36_000, flash_bytes=1_000_000)
    choice = optimize_space(BASE, (0.25, 0.5), (32, 64), "stm32f746", cons, samples=4, seed=0)
    subs = {(s.width_mult, s.resolution): s for s in choice.subspaces}
    assert len(subs) == 4
    for s in choice.subspaces:
        assert s.sampled == 4 and all(m > 0 for m in s.feasible_macs)
    assert subs[(0.5, 64)].fraction < 1.0                  # the budget cuts the largest pair
    feasible = [s for s in choice.subspaces if s.feasible_macs]
    assert choice.best.mean_macs == max(s.mean_macs for s in feasible)
    assert choice.best.mean_macs > subs[(0.25, 32)].mean_macs
    space = choice.space(BASE)
    assert space.resolutions == (choice.best.resolution,) and space.width_mult == choice.best.width_mult
    table = choice.table()
    assert table.count("\n") == 5 and "yes" in table
    png = choice.plot(tmp_path / "cdf.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the kept MACs are those of networks the cost model says fit
    small = replace(BASE, width_mult=0.5, resolutions=(64,))
    assert small.macs(small.largest()) not in subs[(0.5, 64)].feasible_macs
    assert not cons.fits(CostModel(small, "stm32f746").get_efficiency(small.largest()))


def test_nothing_fits_names_the_budget():
    with pytest.raises(NoFitError, match="fits peak SRAM 2000 B and Flash 1000000 B on stm32f411"):
        optimize_space(BASE, (0.25,), (32,), "stm32f411", Constraints(2000, 1_000_000), samples=2)
