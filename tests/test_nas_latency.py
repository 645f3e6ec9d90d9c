"""Latency in the search: boards carry their clock rate, `--latency-ms` becomes an instruction limit of
latency x clock (about one instruction per cycle assumed), a limit below the unconstrained winner's
latency changes the winner and every returned network meets it, and bad uses are one-line errors."""
import json

import pytest

import tinyengine as te
from tinynas.cli import main
from tinynas.cost import CostModel
from tinynas.search import Constraints, EvolutionSearch, MacsProxy
from tinynas.space import SearchSpace

# within the range the instruction fit saw (tinynas.fit_cost: width 0.35, resolutions 48-80)
SMALL = SearchSpace(width_mult=0.35, resolutions=(48, 64), stage_widths=(24, 40, 80), stage_strides=(2, 2, 2),
                    stage_depths=((1, 2), (1, 2), (1, 2)))


def test_boards_carry_their_datasheet_clock():
    assert te.get_board("stm32f746").clock_hz == 216_000_000
    assert te.get_board("stm32f411").clock_hz == 100_000_000
    assert te.get_board("stm32h743").clock_hz == 480_000_000
    assert te.get_board("mps2-an500").clock_hz == te.get_board("mps2-an386").clock_hz == 25_000_000
    assert te.get_board("stm32f746").latency_ms(2_160_000) == pytest.approx(10.0)
    assert te.get_board("stm32f411").latency_ms(2_160_000) == pytest.approx(21.6)
    host = te.get_board("host")
    assert host.clock_hz == 0 and not host.has_clock
    with pytest.raises(te.TinyEngineError, match="board host has no clock rate"):
        host.latency_ms(1000)


@pytest.mark.parametrize("board", ["stm32f746", "stm32f411"])
def test_a_latency_limit_changes_the_winner_and_is_kept(board):
    model = CostModel(SMALL, board)
    loose = Constraints(10**7, 10**7)
    free = EvolutionSearch(SMALL, model, MacsProxy(SMALL), loose, population=6, seed=0).run(2)
    fastest = model.get_efficiency(SMALL.smallest()).instructions
    clock = te.get_board(board).clock_hz
    for share in (0.5, 0.75):   # limits between the smallest network's latency and the free winner's
        limit_ms = 1000 * (fastest + share * (free.efficiency.instructions - fastest)) / clock
        cons = Constraints(10**7, 10**7, int(limit_ms * clock / 1000))
        res = EvolutionSearch(SMALL, model, MacsProxy(SMALL), cons, population=6, seed=0).run(2)
        assert res.candidate != free.candidate
        assert te.get_board(board).latency_ms(res.efficiency.instructions) <= limit_ms
        assert res.score < free.score     # the free winner (more MACs) is out of reach


def test_latency_ms_on_the_command_line(tmp_path):
    out = tmp_path / "o"
    argv = ["search", "--board", "stm32f411", "--sram", "96KB", "--flash", "400KB", "--widths", "0.35",
            "--resolutions", "48,64", "--samples", "2", "--population", "4", "--generations", "1", "--accuracy", "macs",
            "--no-progress", "-o", str(out)]
    assert main(argv) == 0
    free = json.loads((out / "search.json").read_text())
    assert free["constraints"]["max_instructions"] is None
    assert free["latency"]["predicted_ms"] == pytest.approx(free["predicted"]["instructions"] / 100e3, abs=1e-3)
    assert "one instruction per cycle" in free["latency"]["note"]
    limit = round(0.8 * free["latency"]["predicted_ms"], 2)
    assert main(argv + ["--latency-ms", str(limit)]) == 0
    res = json.loads((out / "search.json").read_text())
    assert res["constraints"]["max_instructions"] == int(limit * 100e3)
    assert res["latency"]["limit_ms"] == limit and res["latency"]["predicted_ms"] <= limit
    assert res["predicted"]["instructions"] <= res["constraints"]["max_instructions"]
    assert res["candidate"] != free["candidate"]


@pytest.mark.parametrize("extra,message", [
    (["--board", "host", "--latency-ms", "100"],
     "--latency-ms: board host has no clock rate (boards with one: stm32f746, stm32h743, stm32f411"),
    (["--board", "stm32f746", "--latency-ms", "100", "--max-instructions", "1000"],
     "--latency-ms and --max-instructions both limit latency: give one of them"),
    (["--board", "stm32f746", "--latency-ms", "-5"], "--latency-ms: must be positive, got -5"),
    (["--board", "stm32f746", "--latency-ms", "0.001", "--widths", "0.35", "--resolutions", "48", "--samples", "1"],
     "sampled fits peak SRAM 98304 B, Flash 1048576 B and 216 instructions on stm32f746"),
])
def test_latency_errors_are_one_line(tmp_path, capsys, extra, message):
    assert main(["search", *extra, "--sram", "96KB", "--flash", "1MB", "--accuracy", "macs",
                 "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinynas: error: ") and message in err and err.count("\n") == 1
