"""Build and run a generated project (see tinyengine.project).

    build(out_dir)  -> BuildResult      `make` (QEMU build for Cortex-M boards, ./model for host)
    size(out_dir)   -> dict             Flash / SRAM use from (arm-none-eabi-)size
    run(out_dir, records, output_specs(graph)) -> RunResult
                                         writes input.bin (all records), one `make run` (one QEMU
                                         boot for all records), reads output.bin

Failures raise BuildError (condensed compiler/linker messages), DoesNotFitError (the linker's
"region `RAM' overflowed" turned into needed/available bytes) or RunError (TE_ERROR lines, timeout,
missing marker, malformed output.bin).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .boards import get_board
from .errors import FitError, TinyEngineError
from .project import MANIFEST

DONE_MARKER = "~~~TE DONE~~~"
DEFAULT_TIMEOUT_S = 300
TIMER_WRAPPED = 0xFFFFFFFF   # TE_INSTRUCTIONS value of an inference longer than the timer's range
_MAX_LINES = 25


class BuildError(TinyEngineError):
    """The generated project does not compile or link; the message holds the essential lines."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log


class DoesNotFitError(BuildError, FitError):
    """The linker found the model too big for the board's SRAM or Flash."""

    def __init__(self, message: str, memory: str, needed: int, available: int, log: str = ""):
        super().__init__(message, log)
        self.memory, self.needed, self.available = memory, needed, available


class RunError(TinyEngineError):
    """The firmware failed, hung, or produced malformed output."""

    def __init__(self, message: str, stdout: str = ""):
        super().__init__(message)
        self.stdout = stdout


@dataclass
class BuildResult:
    executable: Path       # model.elf (QEMU build) or model (host)
    log: str


@dataclass
class RunResult:
    outputs: list          # per record: list of output arrays (shape, dtype of output_specs)
    instructions: int | None   # first inference, QEMU (-icount); None on host, or when the
                               # 32-bit timer wrapped (> 2.68e9 instructions)
    stack_bytes: int | None    # deepest stack use during inference; None on host
    stdout: str
    layer_counts: list | None = None   # models compiled with profiling: per layer, the count
                                       # (instructions under QEMU) of the first inference; else None


def _manifest(out_dir: Path) -> dict:
    path = out_dir / MANIFEST
    if not path.exists():
        raise BuildError(f"{out_dir} is not a TinyEngine project (no {MANIFEST})")
    return json.loads(path.read_text())


def _tools(kind: str) -> tuple:
    return ("gcc", "size") if kind == "host" else ("arm-none-eabi-gcc", "arm-none-eabi-size")


def toolchain_available(board, for_run: bool = False) -> bool:
    """Whether the tools to build (and, with for_run, run) a project for ``board`` (a name or a
    Board) are installed."""
    if isinstance(board, str):
        board = get_board(board)
    tools = ["make", _tools(board.kind)[0]]
    if for_run and board.kind != "host":
        tools.append("qemu-system-arm")
    return all(shutil.which(t) is not None for t in tools)


def _require(tool: str, package: str) -> None:
    if shutil.which(tool) is None:
        raise BuildError(f"{tool} not found: install {package} (Debian: apt-get install {package})")


def _condense(log: str) -> str:
    """The lines of a compiler/linker log that say what went wrong."""
    keep = []
    for line in log.splitlines():
        line = re.sub(r"^\S*/ld(\.bfd)?: ", "ld: ", line.strip())
        if re.search(r"\berror\b|overflowed|will not fit|undefined reference|multiple definition|"
                     r"not within region|No rule to make|note: previous", line, re.I) and line not in keep:
            if line.startswith("make") and keep:
                continue  # make's own "Error 1" trailer adds nothing after a real message
            keep.append(line)
    if not keep:
        keep = [ln for ln in log.strip().splitlines()[-_MAX_LINES:]]
    return "\n".join(keep[:_MAX_LINES])


def _fit_error(log: str, m: dict) -> DoesNotFitError | None:
    hits = re.findall(r"region `(RAM|FLASH)' overflowed by (\d+) bytes", log)
    if not hits:
        return None
    region, over = hits[0]
    over = int(over)
    board, stack = m["board"], m["stack_bytes"]
    if region == "RAM":
        have = m["sram_bytes"]
        need = have + over
        msg = (f"model needs {need} bytes of SRAM ({need - stack} static data + {stack} stack), "
               f"board {board} has {have}")
        return DoesNotFitError(msg, "SRAM", need, have, log)
    have = m["flash_bytes"]
    need = have + over
    return DoesNotFitError(f"model needs {need} bytes of Flash, board {board} has {have}",
                           "Flash", need, have, log)


def build(out_dir, jobs: int | None = None) -> BuildResult:
    """Run `make` in the project; raise BuildError / DoesNotFitError on failure."""
    out = Path(out_dir)
    m = _manifest(out)
    cc = _tools(m["kind"])[0]
    _require(cc, "gcc" if m["kind"] == "host" else "gcc-arm-none-eabi")
    jobs = jobs or min(os.cpu_count() or 1, 8)
    p = subprocess.run(["make", f"-j{jobs}"], cwd=out, capture_output=True, text=True)
    log = p.stdout + p.stderr
    if p.returncode != 0:
        fit = _fit_error(log, m)
        if fit is not None:
            raise fit
        raise BuildError(f"building {out} for {m['board']} failed:\n{_condense(log)}", log)
    exe = out / ("model" if m["kind"] == "host" else "model.elf")
    return BuildResult(exe, log)


def size(out_dir) -> dict:
    """Flash and SRAM use of the built firmware (builds it first if needed).

    text: code + constants, data: initialized RAM (its image also in Flash), bss: zeroed RAM
    (without the stack), stack_bytes: the stack reserved by the linker script (0 on host).
    """
    out = Path(out_dir)
    m = _manifest(out)
    exe = build(out).executable
    tool = _tools(m["kind"])[1]
    _require(tool, "binutils" if m["kind"] == "host" else "binutils-arm-none-eabi")
    berkeley = subprocess.run([tool, str(exe)], capture_output=True, text=True, check=True).stdout
    text, data, bss = (int(v) for v in berkeley.splitlines()[1].split()[:3])
    stack = 0
    if m["kind"] != "host":
        sysv = subprocess.run([tool, "-A", str(exe)], capture_output=True, text=True, check=True).stdout
        for line in sysv.splitlines():
            parts = line.split()
            if parts and parts[0] == ".stack":
                stack = int(parts[1])
        bss -= stack  # NOLOAD .stack is counted as bss by the Berkeley format
    return {"text": text, "data": data, "bss": bss, "stack_bytes": stack,
            "flash_bytes": text + data, "sram_static_bytes": data + bss,
            "sram_total_bytes": data + bss + stack}


def _parse_int(stdout: str, key: str) -> int | None:
    hits = re.findall(rf"^{key} (\d+)\s*$", stdout, re.M)
    return int(hits[-1]) if hits else None


def parse_layer_counts(stdout: str) -> list | None:
    """Per-layer counts from the firmware's `TE_LAYER <i> <n>` lines, in layer order; None without
    them.  A layer index missing from the run is an error (the lines are printed as layers end).
    A layer marked more than once in the (first) inference -- the layers of a patch stage, marked
    once per patch -- gets the sum of its lines."""
    hits = re.findall(r"^TE_LAYER (\d+) (\d+)\s*$", stdout, re.M)
    if not hits:
        return None
    counts: dict = {}
    for i, n in hits:
        counts[int(i)] = counts.get(int(i), 0) + int(n)
    if sorted(counts) != list(range(len(counts))):
        missing = sorted(set(range(max(counts) + 1)) - set(counts))
        raise RunError(f"firmware profile is incomplete: no TE_LAYER line for layer(s) {missing[:10]}", stdout)
    return [counts[i] for i in range(len(counts))]


def output_specs(graph) -> list:
    """(shape, NumPy dtype) of each of the graph's outputs, as run() expects them."""
    return [(graph.tensors[t].shape, graph.tensors[t].np_dtype) for t in graph.outputs]


def run(out_dir, records, output_specs, timeout_s: int = DEFAULT_TIMEOUT_S) -> RunResult:
    """Run the firmware once over all records.

    records: list (one per record) of lists of input arrays in te_inputs order; None or [] runs
    once on the default input.  output_specs: [(shape, dtype)] of te_outputs, to split output.bin.
    """
    out = Path(out_dir)
    m = _manifest(out)
    build(out)
    if m["kind"] != "host":
        _require("qemu-system-arm", "qemu-system-arm")

    inp, outp = out / "input.bin", out / "output.bin"
    for f in (inp, outp):
        if f.exists():
            f.unlink()
    records = list(records or [])
    if records:
        with open(inp, "wb") as f:
            for rec in records:
                for a in rec:
                    f.write(np.ascontiguousarray(a).tobytes())
    expected = max(len(records), 1)

    try:
        p = subprocess.run(["make", "-s", "run", f"TIMEOUT={int(timeout_s)}"], cwd=out,
                           capture_output=True, text=True, timeout=timeout_s + 60)
    except subprocess.TimeoutExpired as e:
        raise RunError(f"firmware did not finish within {timeout_s} s", str(e.stdout or "")) from None
    stdout = p.stdout
    errors = re.findall(r"^TE_ERROR (.*)$", stdout, re.M)
    if errors:
        raise RunError(f"firmware error on {m['board']}: {errors[0]}", stdout)
    if p.returncode != 0 or DONE_MARKER not in stdout:
        why = (f"timed out after {timeout_s} s" if re.search(r"Error 124|Error 137", p.stderr)
               else f"exit status {p.returncode}")
        tail = "\n".join((stdout + p.stderr).strip().splitlines()[-10:])
        raise RunError(f"firmware run on {m['board']} failed ({why}):\n{tail}", stdout)

    n_records = _parse_int(stdout, "TE_RECORDS")
    if n_records != expected:
        raise RunError(f"firmware processed {n_records} records, expected {expected} "
                       f"(input sizes do not match the model's inputs?)", stdout)
    specs = [(tuple(int(d) for d in shape), np.dtype(dt)) for shape, dt in output_specs]
    sizes = [int(np.prod(s, dtype=np.int64)) * dt.itemsize for s, dt in specs]
    raw = outp.read_bytes() if outp.exists() else b""
    if len(raw) != expected * sum(sizes):
        raise RunError(f"output.bin holds {len(raw)} bytes, expected {expected} records of "
                       f"{sum(sizes)} bytes (output_specs do not match the model's outputs?)", stdout)
    outputs, pos = [], 0
    for _ in range(expected):
        rec = []
        for (shape, dt), nbytes in zip(specs, sizes):
            rec.append(np.frombuffer(raw[pos:pos + nbytes], dtype=dt).reshape(shape).copy())
            pos += nbytes
        outputs.append(rec)
    instructions = _parse_int(stdout, "TE_INSTRUCTIONS")
    layer_counts = parse_layer_counts(stdout)
    if instructions == TIMER_WRAPPED:
        instructions = layer_counts = None
    return RunResult(outputs, instructions, _parse_int(stdout, "TE_STACK_BYTES"), stdout, layer_counts)
