"""The `tinyengine` command line: compile, run, verify, boards."""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from . import __version__
from .compiler import CompileOptions, compile_model, write_project
from .errors import TinyEngineError
from .hostio import host_io_of
from .ir import IRError
from .ops import UnsupportedError


class UsageError(TinyEngineError):
    pass


def _add_compile_args(p: argparse.ArgumentParser, out_required: bool) -> None:
    p.add_argument("model", help="model file (.tflite)")
    p.add_argument("--board", default="stm32f746", help="target board (see `tinyengine boards`)")
    p.add_argument("-o", "--output-dir", dest="out", required=out_required,
                   help="folder for the generated C project and report.json")
    p.add_argument("--planner", choices=["greedy", "linear"], default="greedy",
                   help="memory planner (default: greedy)")
    p.add_argument("--device-float-io", action="store_true",
                   help="keep a float model's input QUANTIZE / output DEQUANTIZE in the firmware "
                        "(default: they run on the host and the firmware takes and returns int8)")


def _options(args) -> CompileOptions:
    return CompileOptions(board=args.board, planner=args.planner, device_float_io=args.device_float_io)


def _out_dir(args, purpose: str) -> Path:
    if args.out:
        return Path(args.out)
    return Path(tempfile.mkdtemp(prefix=f"tinyengine-{purpose}-"))


# -- input / output conversion ------------------------------------------------------------
def _records_from_files(graph, paths: list) -> list:
    """Load --input files into a list of records (each a list of one array per model input)."""
    model_inputs = host_io_of(graph).model_inputs
    if len(paths) != len(model_inputs):
        raise UsageError(f"the model has {len(model_inputs)} input(s); give one --input per input "
                         f"(got {len(paths)})")
    per_input = []
    for path, t in zip(paths, model_inputs):
        name = t.name
        try:
            x = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise UsageError(f"{path}: cannot read a .npy array ({e})") from None
        if x.dtype != t.np_dtype:
            raise UsageError(f"{path}: input '{name}' is {t.dtype}, the file holds {x.dtype}")
        if x.size == t.size:
            per_input.append([x.reshape(t.shape)])
        elif x.ndim == len(t.shape) + 1 and tuple(x.shape[1:]) == t.shape:
            per_input.append([r for r in x])
        else:
            raise UsageError(f"{path}: input '{name}' has shape {t.shape} (or N x that for N inputs); "
                             f"the file holds {x.shape}")
    counts = {len(r) for r in per_input}
    if len(counts) != 1:
        raise UsageError("all --input files must hold the same number of records")
    return [list(rec) for rec in zip(*per_input)]


def random_records(graph, n: int, seed: int) -> list:
    """Seeded random model inputs over each input's full quantized range."""
    rng = np.random.default_rng(seed)
    hio = host_io_of(graph)
    consumers = graph.consumers()
    records = []
    for _ in range(n):
        rec = []
        for i, t in enumerate(hio.model_inputs):
            if t.dtype == "float32":
                q = None
                if i in hio.in_adapters:
                    a = hio.in_adapters[i].graph
                    q = a.tensors[a.outputs[0]].quant
                for node in consumers.get(t.name, []):
                    if node.op == "QUANTIZE":
                        q = graph.tensors[node.outputs[0]].quant
                lo, hi = (-1.0, 1.0) if q is None else (q.s * (-128 - q.zp), q.s * (127 - q.zp))
                rec.append(rng.uniform(lo, hi, t.shape).astype(np.float32))
            else:
                info = np.iinfo(t.np_dtype)
                rec.append(rng.integers(info.min, info.max, t.shape, endpoint=True).astype(t.np_dtype))
        records.append(rec)
    return records


def _output_specs(graph) -> list:
    return [(graph.tensors[t].shape, graph.tensors[t].np_dtype) for t in graph.outputs]


def _build_and_run(compiled, out: Path, records: list):
    """Build and run the firmware on model-level records; outputs come back model-level too."""
    from . import runner

    hio = host_io_of(compiled.graph)
    runner.build(out)
    result = runner.run(out, [hio.to_device(r) for r in records], _output_specs(compiled.graph))
    result.outputs = [hio.from_device(o) for o in result.outputs]
    sizes = runner.size(out)
    report = compiled.report
    report["flash_bytes"] = sizes["flash_bytes"]
    report["static_sram_bytes"] = sizes["sram_static_bytes"]
    if result.instructions is not None:
        report["instructions"] = result.instructions
    if result.stack_bytes is not None:
        report["stack_bytes"] = result.stack_bytes
        # SRAM the inference touches: every static buffer (arena, model I/O, firmware state) plus
        # the stack actually used
        report["peak_sram_bytes"] = sizes["sram_static_bytes"] + result.stack_bytes
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return result


# -- commands -----------------------------------------------------------------------------
def cmd_compile(args) -> int:
    c = compile_model(args.model, _options(args))
    out = Path(args.out)
    report = write_project(c, out)
    if not args.no_build:
        from . import runner

        if runner.toolchain_available(c.board):
            runner.build(out)
            sizes = runner.size(out)
            report["flash_bytes"] = sizes["flash_bytes"]
            report["static_sram_bytes"] = sizes["sram_static_bytes"]
            (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{Path(args.model).name} -> {out}/ for {c.board.name}: {len(c.graph.nodes)} ops, "
          f"{report['macs']:,} MACs, arena {report['arena_bytes']:,} B, "
          f"peak SRAM {report['peak_sram_bytes']:,} B, "
          f"Flash {report['flash_bytes'] if report['flash_bytes'] is not None else 'n/a'} B")
    return 0


def cmd_run(args) -> int:
    c = compile_model(args.model, _options(args))
    out = _out_dir(args, "run")
    write_project(c, out)
    if args.input:
        records = _records_from_files(c.graph, args.input)
    else:
        records = random_records(c.graph, 1, args.seed)
        print(f"no --input given: running on a seeded random input (seed {args.seed})")
    result = _build_and_run(c, out, records)
    if args.output:
        outs = [np.stack([r[i] for r in result.outputs]) if len(records) > 1 else result.outputs[0][i]
                for i in range(len(result.outputs[-1]))]
        if len(outs) == 1:
            np.save(args.output, outs[0])
        else:
            for i, o in enumerate(outs):
                np.save(Path(args.output).with_suffix(f".{i}.npy"), o)
    last = result.outputs[-1]
    names = [t.name for t in host_io_of(c.graph).model_outputs]
    for i, y in enumerate(last):
        flat = y.ravel()
        print(f"output {i} '{names[i]}' {y.dtype}{list(y.shape)}: "
              f"{np.array2string(flat[:16], separator=' ')}{' ...' if flat.size > 16 else ''}")
        if flat.size > 1:
            print(f"prediction: class {int(np.argmax(flat))}")
    r = c.report
    print(f"board {c.board.name}: peak SRAM {r['peak_sram_bytes']:,} B (arena {r['arena_bytes']:,} B"
          f"{', stack ' + format(r['stack_bytes'], ',') + ' B' if 'stack_bytes' in r else ''}), "
          f"Flash {r['flash_bytes']:,} B, {r['macs']:,} MACs")
    if "instructions" in r:
        print(f"instructions: {r['instructions']:,} ({r['instructions'] / max(r['macs'], 1):.2f} per MAC)")
    print(f"project and report.json in {out}")
    return 0


def cmd_verify(args) -> int:
    from . import golden, reference

    c = compile_model(args.model, _options(args))
    out = _out_dir(args, "verify")
    write_project(c, out)
    records = random_records(c.graph, args.count, args.seed)
    expected = golden.run_tflm_many(args.model, records)
    result = _build_and_run(c, out, records)
    bad = 0
    worst = 0
    for k, (rec_out, gold) in enumerate(zip(result.outputs, expected)):
        for i, (y, g) in enumerate(zip(rec_out, gold)):
            g = np.asarray(g).reshape(y.shape)
            if y.dtype != g.dtype or not np.array_equal(y, g):
                bad += 1
                if y.dtype.kind in "iu":
                    worst = max(worst, int(np.max(np.abs(y.astype(np.int64) - g.astype(np.int64)))))
                if args.verbose:
                    print(f"input {k} output {i}: differs from TFLite Micro")
    if args.reference:
        hio = host_io_of(c.graph)
        for k, rec in enumerate(records):
            ref = hio.from_device(reference.run(c.graph, hio.to_device(rec)))
            for y, g in zip(ref, expected[k]):
                if not np.array_equal(y, np.asarray(g).reshape(y.shape)):
                    bad += 1
    where = "host" if c.board.kind == "host" else f"{c.board.name} on QEMU {c.board.qemu_machine}"
    if bad:
        print(f"FAIL: {Path(args.model).name} on {where}: {bad} output(s) of {args.count} inputs differ "
              f"from TensorFlow Lite Micro (largest difference {worst})")
        return 1
    extra = f", {c.report['instructions']:,} instructions" if "instructions" in c.report else ""
    print(f"OK: {Path(args.model).name} on {where}: bit-exact with TensorFlow Lite Micro on "
          f"{args.count} random inputs (seed {args.seed}){extra}")
    return 0


def cmd_boards(args) -> int:
    from .boards import BOARDS

    for b in BOARDS.values():
        print(f"{b.name:12s} {b.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tinyengine", description="Deep learning compiler for microcontrollers.")
    ap.add_argument("--version", action="version", version=f"tinyengine {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compile", help="compile a model into a C project for a board")
    _add_compile_args(p, out_required=True)
    p.add_argument("--no-build", action="store_true", help="only write the project; do not build it to "
                   "measure Flash")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("run", help="compile, build and run on the board (QEMU) or the host")
    _add_compile_args(p, out_required=False)
    p.add_argument("--input", action="append", help=".npy input (one per model input; N x shape for N runs)")
    p.add_argument("--output", help="write the outputs to this .npy file")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input used without --input")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("verify", help="compare with TensorFlow Lite Micro on random inputs")
    _add_compile_args(p, out_required=False)
    p.add_argument("-n", "--count", type=int, default=10, help="number of random inputs (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reference", action="store_true", help="also check the NumPy reference executor")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("boards", help="list the supported boards")
    p.set_defaults(func=cmd_boards)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (TinyEngineError, UnsupportedError, IRError) as e:
        print(f"tinyengine: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug in TinyEngine, not in the user's input: still one line
        if os.environ.get("TINYENGINE_DEBUG"):
            raise
        print(f"tinyengine: internal error: {type(e).__name__}: {e} "
              "(please report it; TINYENGINE_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
