"""The generated sections of BENCHMARKS.md: each benchmark (and `make nas-demo`) owns the text between
its pair of markers and replaces it in place, or appends it; bench/run.py keeps every pair (KEPT) when
it rewrites the file."""
from __future__ import annotations

from pathlib import Path


def write_section(path: Path, text: str, begin: str, end: str) -> None:
    """Replace `path`'s text from `begin` to `end` with `text` (which starts with `begin` and ends with
    `end`), or append `text` where the markers are not there yet."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_text() if path.is_file() else "# Benchmarks\n"
    if begin in old and end in old[old.index(begin):]:
        a = old.index(begin)
        b = old.index(end, a) + len(end)
        new = old[:a] + text + old[b:]
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.write_text(new.rstrip("\n") + "\n")
