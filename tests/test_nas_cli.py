"""The `tinynas search` command: a small run writes the space table, the CDF plot and search.json whose
network fits the budgets; bad input is one line on stderr with exit code 2."""
import json

import pytest

from tinynas.cli import main, parse_bytes
from tinynas.errors import TinyNasError


def test_search_writes_its_results(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["search", "--board", "stm32f411", "--sram", "96KB", "--flash", "400KB", "--widths", "0.35",
               "--resolutions", "64", "--samples", "2", "--population", "3", "--generations", "1", "--accuracy", "macs",
               "-o", str(out)])
    assert rc == 0
    res = json.loads((out / "search.json").read_text())
    assert res["board"] == "stm32f411" and res["space"]["resolutions"] == [64]
    assert res["predicted"]["peak_sram_bytes"] <= 96 * 1024 and res["predicted"]["flash_bytes"] <= 400 * 1024
    assert res["candidates_evaluated"] >= 3
    assert (out / "space_cdf.png").stat().st_size > 1000 and "| 0.35 | 64 |" in (out / "space.md").read_text()
    assert "best on stm32f411" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["--board", "stm32f999", "--sram", "96KB", "--flash", "1MB"], "board: "),
    (["--board", "stm32f746", "--sram", "lots", "--flash", "1MB"], "--sram: expected a size"),
    (["--board", "stm32f746", "--sram", "4KB", "--flash", "1MB", "--widths", "0.35", "--resolutions", "96",
      "--samples", "1", "--accuracy", "macs"], "no network of any (width, resolution) sampled fits peak SRAM 4096 B"),
    (["--board", "stm32f746", "--sram", "96KB", "--flash", "1MB", "--digits", "--finetune-lr", "0"],
     "--finetune-lr must be positive, got 0.0"),
    (["--board", "stm32f746", "--sram", "96KB", "--flash", "1MB", "--digits", "--widths", "0.35", "--resolutions",
      "32", "--test-fraction", "0.8"], "--val-fraction 0.2 + --test-fraction 0.8 must be below 1"),
    (["--board", "stm32f746", "--sram", "96KB", "--flash", "1MB", "--digits", "--widths", "0.35", "--resolutions",
      "32", "--test-fold", "5"], "--test-fold must be between 0 and 4"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    assert main(["search", *argv, "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinynas: ") and message in err and err.count("\n") == 1


def test_sizes():
    assert parse_bytes("128KB", "--sram") == 131072 and parse_bytes("1MB", "--flash") == 1 << 20
    assert parse_bytes("65536", "--sram") == 65536
    with pytest.raises(TinyNasError, match="--flash: must be positive"):
        parse_bytes("0KB", "--flash")
