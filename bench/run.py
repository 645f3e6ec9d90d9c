#!/usr/bin/env python3
"""Benchmark every shared model on the emulated board and write BENCHMARKS.md.

    python bench/run.py --models ../shared/models [--boards stm32f746,stm32f411] [-o BENCHMARKS.md]

Each row is one `tinyengine verify` run (compile, build, run under QEMU with -icount, compare with
TensorFlow Lite Micro on --count seeded random inputs), so the figures are those of the tree as it
is: peak SRAM (arena, other static data, stack measured), Flash (arm-none-eabi-size), instructions
(exact) and instructions per MAC.  They are set next to the figures measured for TFLM and MIT
TinyEngine in the shared models' README (read from --models/README.md, quoted, never typed in here)
and the targets of issue 4.

A row is a model plus extra `tinyengine compile` options (ROWS below): to add one, add a line.  A
row whose options this tree's CLI does not accept yet (e.g. `--patch` before patch-based inference
exists) is left out of the tables and listed as not run.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tinyengine import __version__, load_model  # noqa: E402
from tinyengine.cli import build_parser, main as cli_main  # noqa: E402

# (label, model file under --models, extra compile options)
ROWS = [
    ("vww_96_int8", "mlperf_tiny/vww_96_int8.tflite", []),
    ("kws_ref_model", "mlperf_tiny/kws_ref_model.tflite", []),
    ("pretrainedResnet_quant", "mlperf_tiny/pretrainedResnet_quant.tflite", []),
    ("ad01_int8", "mlperf_tiny/ad01_int8.tflite", []),
    ("mcunet-vww1", "mcunet/mcunet-vww1.tflite", []),
    ("mcunet-vww1 --patch auto", "mcunet/mcunet-vww1.tflite", ["--patch", "auto"]),
]

# The targets of issue 4 ("Done when", stm32f746): instructions as a fraction of TFLM + CMSIS-NN
# (with absolute limits where the issue gives them), peak SRAM limits, Flash <= weights + 32 KB.
TARGET_INSTR_RATIO = 0.8
TARGET_INSTRUCTIONS = {"vww_96_int8": 14_400_000, "mcunet-vww1": 26_700_000}
# (peak SRAM limits are inclusive: "below 55,296" is at most 55,295)
TARGET_SRAM = {"vww_96_int8": ("below the layer-by-layer bound", 55_295),
               "mcunet-vww1": ("0.75x MIT TinyEngine, layer by layer", 70_000),
               "mcunet-vww1 --patch auto": ("with patches, input image included", 46_000)}
TARGET_FLASH_OVER_WEIGHTS = 32 * 1024
TARGET_BOARD = "stm32f746"


# -- the shared README's tables ---------------------------------------------------------------
def readme_tables(path: Path) -> list:
    """Every markdown table of the file as a list of {header: cell} rows."""
    if not path.is_file():
        return []
    tables, header, rows = [], None, []
    for line in path.read_text().splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = cells
            elif not all(re.fullmatch(r":?-+:?", c) for c in cells):
                rows.append(dict(zip(header, cells)))
        elif header is not None:
            tables.append(rows)
            header, rows = None, []
    return tables


def readme_figures(models_dir: Path) -> dict:
    """model stem -> the README's cells for it (all tables merged), as written there."""
    figures: dict = {}
    for table in readme_tables(models_dir / "README.md"):
        for row in table:
            first = next(iter(row.values()), "")
            stem = Path(first).stem if first.endswith(".tflite") else first.split("/")[-1]
            if stem:
                figures.setdefault(stem, {}).update({k: v for k, v in row.items() if k != "model"})
    return figures


def readme_sentence(models_dir: Path, start: str) -> str | None:
    path = models_dir / "README.md"
    if not path.is_file():
        return None
    text = re.sub(r"\s*\n\s*", " ", path.read_text())
    m = re.search(re.escape(start) + r"[^.]*(?:\.\d[^.]*)*\.", text)
    return m.group(0) if m else None


def number(cell) -> float | None:
    """The number a README cell starts with ('19,735,062 (wrong outputs...)' -> 19735062)."""
    if cell is None:
        return None
    m = re.match(r"\s*([\d,]+(?:\.\d+)?)\b", str(cell))
    return float(m.group(1).replace(",", "")) if m else None


# -- measuring ---------------------------------------------------------------------------------
def cli_accepts(extra: list) -> bool:
    """Whether this tree's `tinyengine compile` takes these options."""
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            build_parser().parse_args(["compile", "m.tflite", "-o", "x"] + extra)
        except SystemExit:
            return False
    return True


def model_weights(path: Path) -> int:
    """Bytes of the model file's constant tensors (weights, biases, shapes) as stored in it."""
    g = load_model(path)
    return sum(t.nbytes for t in g.tensors.values() if t.is_const)


def measure(label: str, model: Path, extra: list, board: str, count: int, work: Path) -> dict:
    from tinyengine import runner

    out = work / f"{board}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', label)}"
    args = ["verify", str(model), "--board", board, "-n", str(count), "--seed", "0", "-o", str(out)] + extra
    stdout, stderr = io.StringIO(), io.StringIO()
    t0 = time.time()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = cli_main(args)
    row = {"label": label, "model": str(model), "board": board, "options": extra, "rc": rc,
           "seconds": round(time.time() - t0, 1), "message": (stdout.getvalue() + stderr.getvalue()).strip()}
    if rc not in (0, 1):
        return row
    report = json.loads((out / "report.json").read_text())
    sizes = runner.size(out)
    weights = model_weights(model)
    row.update({
        "bit_exact": rc == 0,
        "inputs_compared": count,
        "instructions": report.get("instructions"),
        "macs": report["macs"],
        "arena_bytes": report["arena_bytes"],
        "static_sram_bytes": sizes["sram_static_bytes"],
        "other_static_bytes": sizes["sram_static_bytes"] - report["arena_bytes"],
        "stack_bytes": report.get("stack_bytes"),
        "peak_sram_bytes": report.get("peak_sram_bytes"),
        "flash_bytes": sizes["flash_bytes"],
        "text_bytes": sizes["text"],
        "const_bytes": report["const_bytes"],
        "model_weights_bytes": weights,
        "flash_minus_weights": sizes["flash_bytes"] - weights,
    })
    if row["instructions"] and row["macs"]:
        row["instructions_per_mac"] = row["instructions"] / row["macs"]
    return row


# -- BENCHMARKS.md -----------------------------------------------------------------------------
def _n(v, spec=",") -> str:
    return "-" if v is None else format(v, spec)


def _ratio(a, b) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}x"


def _tool_version(cmd: str) -> str:
    if shutil.which(cmd) is None:
        return f"{cmd}: not installed"
    p = subprocess.run([cmd, "--version"], capture_output=True, text=True)
    return (p.stdout.splitlines() or ["?"])[0].strip()


def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return head + (" with uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def _check(value, limit) -> str:
    if value is None or limit is None:
        return "-"
    return "yes" if value <= limit else "**no**"


def render(rows: list, skipped: list, figures: dict, models_dir: Path, count: int) -> str:
    try:
        tflm_version = importlib.metadata.version("tflite-micro")
    except importlib.metadata.PackageNotFoundError:
        tflm_version = "not installed"
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    L = ["# Benchmarks", "",
         "Generated by `bench/run.py` (`make bench`); do not edit by hand.", "",
         f"- date: {date}; commit: {_commit()}; tinyengine {__version__}",
         f"- toolchain: {_tool_version('arm-none-eabi-gcc')}; {_tool_version('qemu-system-arm')}",
         f"- golden: tflite-micro {tflm_version} (TensorFlow Lite Micro), {count} seeded random inputs per row",
         "- instructions: one inference, exact (QEMU `-icount shift=6`, CMSDK timer); "
         "peak SRAM = every static buffer (arena with the model's input and output, other static data) "
         "+ the stack measured during inference; Flash = .text + .data (arm-none-eabi-size); "
         "weights = the constant tensors of the model file",
         f"- peer figures (TFLM, MIT TinyEngine, lower bounds): quoted from `{models_dir}/README.md`, "
         "measured there on the same platform (QEMU mps2-an500 Cortex-M7, arm-none-eabi-gcc 12.2, -O2)",
         ""]
    for board in sorted({r["board"] for r in rows}, key=lambda b: (b != TARGET_BOARD, b)):
        brows = [r for r in rows if r["board"] == board]
        peers = board == TARGET_BOARD
        L += [f"## {board}", "", "### Speed", ""]
        if peers:
            L += ["| model | MACs | instructions | instr/MAC | TFLM reference | TFLM + CMSIS-NN | "
                  "instr/MAC (CMSIS-NN) | this / CMSIS-NN | MIT TinyEngine | bit-exact vs TFLM |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
        else:
            L += ["| model | MACs | instructions | instr/MAC | bit-exact vs TFLM |", "|---|---:|---:|---:|---|"]
        for r in brows:
            if "macs" not in r:
                continue
            f = figures.get(Path(r["model"]).stem, {})
            ipm = _n(r.get("instructions_per_mac"), ".2f")
            exact = "yes" if r["bit_exact"] else "**NO**"
            if peers:
                cmsis = f.get("TFLM + CMSIS-NN")
                L.append(f"| {r['label']} | {r['macs']:,} | {_n(r['instructions'])} | {ipm} | "
                         f"{f.get('TFLM reference', '-')} | {cmsis or '-'} | {f.get('instr/MAC (CMSIS-NN)', '-')} | "
                         f"{_ratio(r['instructions'], number(cmsis))} | {f.get('TinyEngine instructions', '-')} | "
                         f"{exact} |")
            else:
                L.append(f"| {r['label']} | {r['macs']:,} | {_n(r['instructions'])} | {ipm} | {exact} |")
        L += ["", "### Memory (bytes)", ""]
        if peers:
            L += ["| model | peak SRAM | arena | other static | stack | TFLM arena_used_bytes | "
                  "this / TFLM arena | activation lower bound | MIT TinyEngine SRAM | Flash | weights | "
                  "Flash - weights |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
        else:
            L += ["| model | peak SRAM | arena | other static | stack | Flash | weights | Flash - weights |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in brows:
            if "macs" not in r:
                continue
            f = figures.get(Path(r["model"]).stem, {})
            mem = (f"| {r['label']} | {_n(r['peak_sram_bytes'])} | {r['arena_bytes']:,} | "
                   f"{r['other_static_bytes']:,} | {_n(r['stack_bytes'])} |")
            flash = f" {r['flash_bytes']:,} | {r['model_weights_bytes']:,} | {r['flash_minus_weights']:,} |"
            if peers:
                tflm = f.get("TFLM arena_used_bytes")
                L.append(mem + f" {tflm or '-'} | {_ratio(r['peak_sram_bytes'], number(tflm))} | "
                         f"{f.get('activation lower bound', '-')} | {f.get('TinyEngine SRAM', '-')} |" + flash)
            else:
                L.append(mem + flash)
        if peers:
            L += ["", "### Issue 4 targets", "",
                  "| model | instructions | limit | met | peak SRAM | limit | met | Flash - weights | limit | met |",
                  "|---|---:|---:|---|---:|---:|---|---:|---:|---|"]
            for r in brows:
                if "macs" not in r:
                    continue
                f = figures.get(Path(r["model"]).stem, {})
                cmsis = number(f.get("TFLM + CMSIS-NN"))
                i_lim = TARGET_INSTRUCTIONS.get(r["label"].split()[0])
                if i_lim is None and cmsis:
                    i_lim = int(TARGET_INSTR_RATIO * cmsis)
                if r["label"] in TARGET_SRAM:
                    s_lim = TARGET_SRAM[r["label"]][1]
                else:  # less than TFLM's arena
                    tflm = number(f.get("TFLM arena_used_bytes"))
                    s_lim = None if tflm is None else int(tflm) - 1
                L.append(f"| {r['label']} | {_n(r['instructions'])} | {_n(i_lim)} | "
                         f"{_check(r['instructions'], i_lim)} | {_n(r['peak_sram_bytes'])} | {_n(s_lim)} | "
                         f"{_check(r['peak_sram_bytes'], s_lim)} | "
                         f"{r['flash_minus_weights']:,} | {TARGET_FLASH_OVER_WEIGHTS:,} | "
                         f"{_check(r['flash_minus_weights'], TARGET_FLASH_OVER_WEIGHTS)} |")
            L += ["", "Limits: instructions at most 0.8x TFLM + CMSIS-NN (vww_96_int8: 14,400,000; "
                  "mcunet-vww1: 26,700,000); peak SRAM below TFLM's arena (vww_96_int8: below the "
                  "55,296-byte layer-by-layer bound; mcunet-vww1: at most 70,000, with patches at most "
                  "46,000); Flash at most the weights + 32 KB."]
        L.append("")
    failed = [r for r in rows if "macs" not in r]
    if failed or skipped:
        L += ["## Not measured", ""]
        for r in failed:
            L.append(f"- {r['label']} on {r['board']}: {r['message'].splitlines()[-1] if r['message'] else 'failed'}")
        for label, why in skipped:
            L.append(f"- {label}: {why}")
        L.append("")
    patch_note = readme_sentence(models_dir, "TinyEngine on MCUNet-vww1 with its")
    size_note = readme_sentence(models_dir, "Code size (.text + .rodata")
    if patch_note or size_note:
        L += ["## Notes quoted from the shared README", ""]
        for s in (patch_note, size_note):
            if s:
                L += [f"> {s}", ""]
    return "\n".join(L)


KEPT = [("<!-- bench/train.py: begin", "<!-- bench/train.py: end -->"),   # bench/train.py's section
        ("<!-- tinynas:begin -->", "<!-- tinynas:end -->"),                 # bench/nas.py's
        ("<!-- nas-demo:begin -->", "<!-- nas-demo:end -->")]               # examples/nas_demo.py's


def kept_sections(path: Path) -> str:
    """The sections other benchmarks write into the same file (between their markers),
    kept as they are when this one rewrites it."""
    old = path.read_text() if path.is_file() else ""
    return "".join("\n" + old[old.index(begin):old.index(end) + len(end)] + "\n"
                   for begin, end in KEPT if begin in old and end in old)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=str(ROOT.parent / "shared" / "models"),
                    help="folder of the shared models (with its README.md)")
    ap.add_argument("--boards", default=TARGET_BOARD,
                    help=f"comma-separated boards (default {TARGET_BOARD}; e.g. {TARGET_BOARD},stm32f411)")
    ap.add_argument("-n", "--count", type=int, default=2, help="random inputs compared with TFLM per row")
    ap.add_argument("-o", "--output", default=str(ROOT / "BENCHMARKS.md"), help="markdown file to write")
    ap.add_argument("--json", help="also write the measurements as JSON here")
    ap.add_argument("--work", help="keep the generated projects in this folder (default: a temporary one)")
    ap.add_argument("--only", help="comma-separated row labels to run (default: all)")
    args = ap.parse_args(argv)

    models_dir = Path(args.models)
    if not models_dir.is_dir():
        print(f"bench: {models_dir}: no such folder (give the shared models with --models)", file=sys.stderr)
        return 2
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="tinyengine-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(",")) if args.only else None

    rows, skipped = [], []
    for board in args.boards.split(","):
        for label, rel, extra in ROWS:
            if only and label not in only:
                continue
            model = models_dir / rel
            if not model.is_file():
                skipped.append((label, f"{model} not found"))
                continue
            if not cli_accepts(extra):
                if board == args.boards.split(",")[0]:
                    skipped.append((label, f"this tree's `tinyengine compile` has no option "
                                           f"`{' '.join(extra)}` yet"))
                continue
            row = measure(label, model, extra, board, args.count, work)
            rows.append(row)
            if "macs" in row:
                print(f"{board:10s} {label:28s} {_n(row['instructions']):>12} instr  "
                      f"{_n(row.get('instructions_per_mac'), '.2f'):>5}/MAC  "
                      f"peak SRAM {_n(row['peak_sram_bytes']):>8} B  "
                      f"Flash {row['flash_bytes']:>9,} B  {'bit-exact' if row['bit_exact'] else 'DIFFERS'}  "
                      f"({row['seconds']} s)", flush=True)
            else:
                print(f"{board:10s} {label:28s} failed: {row['message'].splitlines()[-1] if row['message'] else ''}",
                      flush=True)

    text = render(rows, skipped, readme_figures(models_dir), models_dir, args.count)
    Path(args.output).write_text(text + "\n" + kept_sections(Path(args.output)))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "skipped": skipped}, indent=2) + "\n")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.output}")
    # a model too big for a board is a result; a failure or a difference from TFLM is not
    bad = [r for r in rows if ("macs" not in r and "does not fit" not in r["message"])
           or not r.get("bit_exact", True)]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
