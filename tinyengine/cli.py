"""The `tinyengine` command line: compile, run, verify, profile, boards.

CLI layer: it calls the public API (``import tinyengine as te``, docs/API.md) and nothing else.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

import tinyengine as te


class UsageError(te.TinyEngineError):
    pass


def _add_compile_args(p: argparse.ArgumentParser, out_required: bool) -> None:
    p.add_argument("model", help="model file (.tflite or .onnx)")
    p.add_argument("--board", default="stm32f746", help="target board (see `tinyengine boards`)")
    p.add_argument("-o", "--output-dir", dest="out", required=out_required,
                   help="folder for the generated C project and report.json")
    p.add_argument("--planner", choices=["greedy", "linear"], default="greedy",
                   help="memory planner (default: greedy)")
    p.add_argument("--device-float-io", action="store_true",
                   help="keep a float model's input QUANTIZE / output DEQUANTIZE, and the float "
                        "ops at its edges, in the firmware (default: they run on the host and the "
                        "firmware takes and returns int8)")
    m = p.add_argument_group("memory (peak SRAM)")
    m.add_argument("--patch", metavar="auto|RxC@LAYER",
                   help="run the first layers patch by patch (MCUNetV2): 'auto' picks the split layer "
                        "and grid with the lowest peak SRAM within 10%% extra MACs; 'RxC@LAYER' (e.g. "
                        "3x3@7) sets the grid and the split layer (node index or name)")
    m.add_argument("--sram-limit", type=_byte_count, metavar="BYTES",
                   help="pick the fastest schedule (patches or none) whose peak SRAM fits BYTES; "
                        "an error says how much is needed when none does")
    m.add_argument("--no-overlap", action="store_true",
                   help="keep every op's output apart from its input (plain layer-by-layer plan)")
    m.add_argument("--no-fold-pad", action="store_true", help="keep PAD ops as separate layers")
    m.add_argument("--no-reorder", action="store_true", help="keep the model's op order")
    m.add_argument("--no-fuse", action="store_true",
                   help="never run a 1x1 expand conv and its depthwise conv fused row by row")
    m.add_argument("--no-compact-params", action="store_true",
                   help="keep every layer's per-channel parameters (bias, multiplier, shift) "
                        "unpacked in Flash instead of bit-packed where the arena has room")
    te.Calibration.add_arguments(p)


def _options(args) -> te.CompileOptions:
    return te.CompileOptions(board=args.board, planner=args.planner, device_float_io=args.device_float_io,
                          calibration=te.Calibration.from_args(args), **_memory_options(args))


def _byte_count(text: str) -> int:
    """'46000', '46_000', '45k' / '45K' (x1000), '44KiB' (x1024) -> bytes."""
    t = text.strip().replace("_", "").replace(",", "")
    scale = 1
    for suffix, mult in (("kib", 1024), ("k", 1000), ("kb", 1000)):
        if t.lower().endswith(suffix):
            t, scale = t[:-len(suffix)], mult
            break
    try:
        value = int(float(t) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a byte count (e.g. 46000 or 45k)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the limit must be positive")
    return value


def _memory_options(args) -> dict:
    return dict(patch=getattr(args, "patch", None), sram_limit=getattr(args, "sram_limit", None),
                overlap=not getattr(args, "no_overlap", False),
                fold_pad=not getattr(args, "no_fold_pad", False),
                reorder=not getattr(args, "no_reorder", False),
                fuse=not getattr(args, "no_fuse", False),
                compact_params=not getattr(args, "no_compact_params", False))


def _out_dir(args, purpose: str) -> Path:
    if args.out:
        return Path(args.out)
    return Path(tempfile.mkdtemp(prefix=f"tinyengine-{purpose}-"))


# -- input / output conversion ------------------------------------------------------------
def _records_from_files(graph, paths: list) -> list:
    """Load --input files into a list of records (each a list of one array per model input)."""
    model_inputs = te.host_io_of(graph).model_inputs
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
        elif x.ndim == len(t.shape) and t.shape and t.shape[0] == 1 and tuple(x.shape[1:]) == t.shape[1:]:
            per_input.append([x[i:i + 1] for i in range(len(x))])   # batch-1 model: N x ... stacked
        else:
            raise UsageError(f"{path}: input '{name}' has shape {t.shape} (or N x that for N inputs); "
                             f"the file holds {x.shape}")
    counts = {len(r) for r in per_input}
    if len(counts) != 1:
        raise UsageError("all --input files must hold the same number of records")
    return [list(rec) for rec in zip(*per_input)]


# -- commands -----------------------------------------------------------------------------
def cmd_compile(args) -> int:
    c = te.compile_model(args.model, _options(args))
    out = Path(args.out)
    report = te.write_project(c, out)
    if not args.no_build and te.toolchain_available(c.board):
        report = te.build_project(c, out)
    print(f"{Path(args.model).name} -> {out}/ for {c.board.name}: {len(c.graph.nodes)} ops, "
          f"{report['macs']:,} MACs, arena {report['arena_bytes']:,} B, "
          f"peak SRAM {report['peak_sram_bytes']:,} B, "
          f"Flash {report['flash_bytes'] if report['flash_bytes'] is not None else 'n/a'} B")
    return 0


def cmd_run(args) -> int:
    c = te.compile_model(args.model, _options(args))
    out = _out_dir(args, "run")
    te.write_project(c, out)
    if args.input:
        records = _records_from_files(c.graph, args.input)
    else:
        records = te.random_records(c.graph, 1, args.seed)
        print(f"no --input given: running on a seeded random input (seed {args.seed})")
    result = te.build_and_run(c, out, records)
    if args.output:
        outs = [np.stack([r[i] for r in result.outputs]) if len(records) > 1 else result.outputs[0][i]
                for i in range(len(result.outputs[-1]))]
        if len(outs) == 1:
            np.save(args.output, outs[0])
        else:
            for i, o in enumerate(outs):
                np.save(Path(args.output).with_suffix(f".{i}.npy"), o)
    last = result.outputs[-1]
    names = [t.name for t in te.host_io_of(c.graph).model_outputs]
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


def largest_difference(y, g) -> float:
    """max |y - g| over two outputs of one shape, integer or float (inf where one holds a NaN
    or an infinity the other has not)."""
    a, b = np.asarray(y, dtype=np.float64), np.asarray(g, dtype=np.float64)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    if same.all():
        return 0.0
    return float(np.max(np.where(same, 0.0, np.nan_to_num(np.abs(a - b), nan=np.inf))))


def cmd_verify(args) -> int:
    c = te.compile_model(args.model, _options(args))
    out = _out_dir(args, "verify")
    te.write_project(c, out)
    if c.graph.meta.get("format") == "onnx":
        return _verify_onnx(args, c, out)
    records = te.random_records(c.graph, args.count, args.seed)
    expected = te.run_tflm_many(args.model, records)
    result = te.build_and_run(c, out, records)
    bad = 0
    worst = 0
    float_ops = c.graph.meta.get("float_edge_ops")     # float results: within a tolerance
    float_worst = 0.0
    for k, (rec_out, gold) in enumerate(zip(result.outputs, expected)):
        for i, (y, g) in enumerate(zip(rec_out, gold)):
            g = np.asarray(g).reshape(y.shape)
            if y.dtype.kind == "f" and float_ops:
                float_worst = max(float_worst, largest_difference(y, g))
            if not _agrees(y, g, float_ops):
                bad += 1
                worst = max(worst, largest_difference(y, g))
                if args.verbose:
                    print(f"input {k} output {i}: differs from TFLite Micro")
    if args.reference:
        hio = te.host_io_of(c.graph)
        for k, rec in enumerate(records):
            ref = hio.from_device(te.run_reference(c.graph, hio.to_device(rec)))
            for y, g in zip(ref, expected[k]):
                g = np.asarray(g).reshape(y.shape)
                if not _agrees(y, g, float_ops):
                    bad += 1
                    worst = max(worst, largest_difference(y, g))
    where = "host" if c.board.kind == "host" else f"{c.board.name} on QEMU {c.board.qemu_machine}"
    if bad:
        print(f"FAIL: {Path(args.model).name} on {where}: {bad} output(s) of {args.count} inputs differ "
              f"from TensorFlow Lite Micro (largest difference {worst:g}"
              + (f"; float outputs may differ by {te.FLOAT_RTOL:g} x |value| + {te.FLOAT_ATOL:g}"
                 if float_ops else "") + ")")
        return 1
    extra = f", {c.report['instructions']:,} instructions" if "instructions" in c.report else ""
    names = ", ".join(o.removesuffix("_F32") for o in float_ops or ())
    agree = "bit-exact with TensorFlow Lite Micro" if not float_ops else (
        f"equal to TensorFlow Lite Micro (float outputs of {names} within {te.FLOAT_RTOL:g} x "
        f"|value| + {te.FLOAT_ATOL:g}, largest difference {float_worst:.3g})")
    print(f"OK: {Path(args.model).name} on {where}: {agree} on "
          f"{args.count} random inputs (seed {args.seed}){extra}")
    return 0


def _agrees(y, g, float_ops) -> bool:
    """An output equals TFLite Micro's: bit for bit, or for a float output of a model with
    float ops at its edges (ops/float_edge.py) within FLOAT_RTOL x |value| + FLOAT_ATOL."""
    if y.dtype != g.dtype:
        return False
    if y.dtype.kind == "f" and float_ops:
        return bool(np.allclose(y, g, rtol=te.FLOAT_RTOL, atol=te.FLOAT_ATOL))
    return bool(np.array_equal(y, g))


def cmd_profile(args) -> int:
    c = te.compile_model(args.model, replace(_options(args), profile=True))
    if c.board.kind == "host":
        raise UsageError(f"board {c.board.name} cannot count instructions: profile on a Cortex-M board "
                         "(it runs under QEMU with -icount)")
    out = _out_dir(args, "profile")
    te.write_project(c, out)
    if args.input:
        records = _records_from_files(c.graph, args.input)[:1]
    else:
        records = te.random_records(c.graph, 1, args.seed)
    result = te.build_and_run(c, out, records)
    _, table, picture, note = te.write_profile(c, result, c.report, out)
    print(table)
    if note:
        print(f"tinyengine profile: {note}", file=sys.stderr)
    print(f"profile.json, profile.txt{', arena.png' if picture else ''} and the project in {out}")
    return 0


def _verify_onnx(args, c, out: Path) -> int:
    """ONNX: our firmware against onnxruntime running the same .onnx file.

    onnxruntime's integer kernels round differently from TFLite's (which TinyEngine follows),
    and a float file is compared with our int8 quantization of it, so the measure is top-1
    agreement (and, for QDQ files, how many outputs are exactly equal), not bit-exactness.
    With --reference our NumPy reference must equal our firmware exactly.
    """
    if args.input:
        records = _records_from_files(c.graph, args.input)
        what = f"{len(records)} inputs from {', '.join(Path(p).name for p in args.input)}"
    else:
        records = te.random_records(c.graph, args.count, args.seed)
        what = f"{args.count} random inputs (seed {args.seed})"
    expected = te.run_onnxruntime_many(args.model, records)
    result = te.build_and_run(c, out, records)
    n = len(records)
    agree = equal = 0
    steps = 0.0
    ours, theirs = [], []
    adapter = te.host_io_of(c.graph).out_adapters.get(0)
    dq = getattr(adapter, "graph", None)
    out_scale = dq.tensors[dq.inputs[0]].quant.s if dq is not None else 1.0
    for k, (rec_out, gold) in enumerate(zip(result.outputs, expected)):
        y, g = rec_out[0], np.asarray(gold[0]).reshape(rec_out[0].shape)
        a, b = int(np.argmax(y)), int(np.argmax(g))
        ours.append(a)
        theirs.append(b)
        agree += a == b
        same = all(np.array_equal(yy, np.asarray(gg).reshape(yy.shape)) for yy, gg in zip(rec_out, gold))
        equal += same
        steps = max(steps, float(np.max(np.abs(y.astype(np.float64) - g.astype(np.float64)))) / out_scale)
        if args.verbose and a != b:
            print(f"input {k}: class {a}, onnxruntime says {b}")
    ref_bad = 0
    if args.reference:
        hio = te.host_io_of(c.graph)
        for rec, rec_out in zip(records, result.outputs):
            ref = hio.from_device(te.run_reference(c.graph, hio.to_device(rec)))
            ref_bad += sum(not np.array_equal(r, y) for r, y in zip(ref, rec_out))
    qdq = bool(c.graph.meta.get("onnx_qdq"))
    need = args.min_agreement if args.min_agreement is not None else (99.0 if qdq else 97.0)
    pct = 100.0 * agree / max(n, 1)
    where = "host" if c.board.kind == "host" else f"{c.board.name} on QEMU {c.board.qemu_machine}"
    kind = "QDQ int8" if qdq else "float, quantized by TinyEngine"
    print(f"{Path(args.model).name} ({kind}) on {where}, {what}:")
    print(f"  top-1 agreement with onnxruntime: {agree}/{n} ({pct:.1f}%)"
          + (f"; outputs exactly equal: {equal}/{n}, largest difference {steps:.0f} "
             "output quantization steps" if qdq else ""))
    if args.labels:
        labels = np.load(args.labels, allow_pickle=False).reshape(-1)[:n]
        if len(labels) != n:
            raise UsageError(f"{args.labels}: {len(labels)} labels for {n} inputs")
        acc_ours = 100.0 * np.mean(np.array(ours) == labels)
        acc_ort = 100.0 * np.mean(np.array(theirs) == labels)
        print(f"  accuracy: TinyEngine int8 {acc_ours:.1f}%, onnxruntime {acc_ort:.1f}%")
    if args.reference:
        print(f"  NumPy reference vs firmware: {n - ref_bad}/{n} bit-exact")
    if "instructions" in c.report:
        print(f"  {c.report['instructions']:,} instructions per inference, peak SRAM "
              f"{c.report['peak_sram_bytes']:,} B")
    if pct < need or ref_bad:
        print(f"FAIL: top-1 agreement {pct:.1f}% (required {need:g}%)"
              + (f", {ref_bad} reference mismatches" if ref_bad else ""))
        return 1
    print(f"OK: top-1 agreement {pct:.1f}% >= {need:g}%")
    return 0


def cmd_boards(args) -> int:
    for b in te.BOARDS.values():
        print(f"{b.name:12s} {b.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tinyengine", description="Deep learning compiler for microcontrollers.")
    ap.add_argument("--version", action="version", version=f"tinyengine {te.__version__}")
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
    p.add_argument("--input", action="append", help="ONNX: .npy inputs to compare on (N x the model's "
                   "input; default: -n seeded random inputs)")
    p.add_argument("--labels", help="ONNX: .npy of the N true classes, to report both accuracies")
    p.add_argument("--min-agreement", type=float, metavar="PCT",
                   help="ONNX: fail below this top-1 agreement with onnxruntime (default 99 for a "
                        "QDQ model, 97 for a float model quantized by TinyEngine)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("profile", help="per-layer instructions, MACs and SRAM on the board (QEMU), "
                       "with a picture of the arena")
    _add_compile_args(p, out_required=False)
    p.add_argument("--input", action="append", help=".npy input (one per model input; the first record "
                   "is profiled); default: a seeded random input")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input used without --input")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("boards", help="list the supported boards")
    p.set_defaults(func=cmd_boards)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    model = getattr(args, "model", None)

    def describe(e) -> str:
        msg = str(e)
        if isinstance(e, (te.UnsupportedError, te.IRError, te.ModelError)):
            msg = " ".join(msg.split())     # one line, whatever names the model holds
            if model and not msg.startswith(str(model)):
                msg = f"{model}: {msg}"     # a pass's message names the node: say which file too
        return msg

    return te.run_command("tinyengine", lambda: args.func(args), describe=describe)


if __name__ == "__main__":
    sys.exit(main())
