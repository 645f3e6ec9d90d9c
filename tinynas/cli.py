"""The `tinynas` command: `tinynas search --board B --sram 128KB --flash 512KB [--latency-ms 200] [--patch]
(--data DIR | --digits) [--supernet CKPT] -o out/`.

What exists of the end-to-end search (issue 14):

1. without --supernet: the search-space optimization over the `--widths` x `--resolutions` grid (MCUNet
   stage 1: out/space.md, out/space_cdf.png), then a supernet of the chosen sub-space trained on the
   data (`--supernet-epochs`, into out/supernet/; its validation split, `--val-fraction`, and test split,
   `--test-fraction`, are held out from training). With `--supernet CKPT` that checkpoint's space is searched and stage 1 is skipped.
2. the evolutionary search in that space with tinyengine's cost model (SRAM, Flash, instructions) and
   the accuracy `--accuracy` names (tinynas.accuracy): the supernet's subnets measured on the validation
   split, a predictor fitted on such measurements, `auto` (the rule of tinynas.accuracy.choose_accuracy),
   or `macs` (log10 MACs, no data and no supernet: fast runs). Measurements are kept beside the
   checkpoint (measured.json, keyed by the checkpoint's bytes, the data and the recalibration), so searches
   of one supernet for other boards or budgets fit their predictor without measuring again.
3. `--latency-ms`: an instruction limit of latency x the board's clock (`Board.clock_hz`; about one
   instruction per cycle assumed, an estimate); a board without a clock (host) is refused.

4. with a supernet (data given, --accuracy other than macs): the winner fine-tuned from its inherited weights
   (`--finetune-epochs`), exported to ONNX, quantized through tinyengine's calibration path, compiled, run
   on the board (QEMU, or the host) on the test split, which neither training nor the search saw
   (tinynas.pipeline): out/report.json with the
   predicted and measured peak SRAM (equal), Flash and instructions and the int8 accuracy on the device,
   out/model.onnx, out/candidate.json, out/project/ (`--no-deploy` stops after the search).

Writes out/search.json: the best candidate within SRAM, Flash and latency, its predicted figures,
predicted latency, the accuracy predictor's description (held-out rank correlation and RMSE for the
fitted one) and the winner's measured validation accuracy. Bad input: one line on stderr, exit code 2.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import tinyengine as te

from .cost import CostModel, board_of
from .errors import TinyNasError
from .search import Constraints, EvolutionSearch, MacsProxy
from .space import SearchSpace
from .space_opt import optimize_space

DEFAULT_WIDTHS, DEFAULT_RESOLUTIONS = "0.35,0.5", "96,128"
_UNITS = {"": 1, "B": 1, "KB": 1024, "KIB": 1024, "MB": 1024 * 1024, "MIB": 1024 * 1024}


def parse_bytes(text: str, option: str) -> int:
    """'128KB', '512kb', '1MB', '65536' -> bytes (KB = 1024 bytes)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).upper() not in _UNITS:
        raise TinyNasError(f"{option}: expected a size such as 128KB, 1MB or 65536, got {text!r}")
    value = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if value <= 0:
        raise TinyNasError(f"{option}: must be positive, got {text!r}")
    return value


def _numbers(text: str, option: str, kind):
    try:
        values = tuple(kind(v) for v in text.split(","))
    except ValueError:
        raise TinyNasError(f"{option}: expected comma-separated numbers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise TinyNasError(f"{option}: expected positive numbers, got {text!r}")
    return values


def _constraints(args, board) -> Constraints:
    """SRAM and Flash budgets, and the instruction limit from --max-instructions or --latency-ms."""
    limit = args.max_instructions
    if args.latency_ms is not None:
        if args.max_instructions is not None:
            raise TinyNasError("--latency-ms and --max-instructions both limit latency: give one of them")
        if not args.latency_ms > 0:
            raise TinyNasError(f"--latency-ms: must be positive, got {args.latency_ms:g}")
        if not board.has_clock:
            raise TinyNasError(f"--latency-ms: board {board.name} has no clock rate (boards with one: "
                               f"{', '.join(b.name for b in te.BOARDS.values() if b.has_clock)})")
        limit = max(1, int(args.latency_ms * board.clock_hz / 1000))
    return Constraints(parse_bytes(args.sram, "--sram"), parse_bytes(args.flash, "--flash"), limit)


def _latency(board, eff, limit_ms) -> dict | None:
    if not board.has_clock:
        return None
    return {"predicted_ms": round(board.latency_ms(eff.instructions), 3), "limit_ms": limit_ms,
            "clock_hz": board.clock_hz,
            "note": "predicted instructions / clock rate, assuming about one instruction per cycle (what QEMU "
                    "-icount counts); an estimate, not a measurement"}


def _data_spec(args) -> str | None:
    if args.data is not None and args.digits:
        raise TinyNasError("--data and --digits: give one of them")
    if args.supernet_epochs < 1:
        raise TinyNasError(f"--supernet-epochs must be at least 1, got {args.supernet_epochs}")
    if args.verify_top < 1:
        raise TinyNasError(f"--verify-top must be at least 1, got {args.verify_top}")
    if args.finetune_epochs < 0:
        raise TinyNasError(f"--finetune-epochs must be at least 0, got {args.finetune_epochs}")
    if args.predictor_samples < 8:
        raise TinyNasError(f"--predictor-samples must be at least 8 (a quarter is held out), got "
                           f"{args.predictor_samples}")
    return "digits" if args.digits else args.data


def _supernet_accuracy(args, data_spec: str, ckpt: Path):
    from .accuracy import SupernetAccuracy
    return SupernetAccuracy.from_checkpoint(ckpt, data_spec, args.channels, device=_device(args.device),
                                            progress=not args.no_progress, share=True)


def _device(device: str) -> str:
    torch = _require("torch")
    if device not in ("auto", "cpu", "cuda"):
        raise TinyNasError(f"--device must be auto, cpu or cuda, got {device}")
    if device == "cuda" and not torch.cuda.is_available():
        raise TinyNasError("--device cuda: no CUDA device is available (use --device cpu)")
    return "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"


def _train_supernet(args, data_spec: str, space: SearchSpace, out: Path) -> Path:
    """A supernet of the chosen space trained on the data (tinynas.training), its checkpoint's path."""
    from .training import CHECKPOINT, TrainConfig, train
    print(f"training the supernet of w{space.width_mult:g} r{','.join(map(str, space.resolutions))} on "
          f"{data_spec} for {args.supernet_epochs} epochs into {out}", flush=True)
    train(TrainConfig(data=data_spec, out=out, space=space, epochs=args.supernet_epochs, seed=args.seed,
                      val_fraction=args.val_fraction, test_fraction=args.test_fraction, test_fold=args.test_fold,
                      channels=args.channels, device=args.device,
                      progress=not args.no_progress))
    return out / CHECKPOINT


def _accuracy(args, space: SearchSpace, measured):
    """The search's accuracy predictor as --accuracy says, and what search.json says about it."""
    from .accuracy import choose_accuracy, fit_predictor
    kind = args.accuracy
    if kind == "macs":
        return MacsProxy(space), {"kind": "macs", "description": "log10 of the MACs (MacsProxy)"}
    if kind == "auto":
        kind = choose_accuracy(args.population, args.generations, args.predictor_samples)
    if kind == "supernet":
        return measured, {"kind": "supernet", "description": "supernet subnet accuracy on the validation split "
                                                             "after BN recalibration, measured per candidate"}
    predictor = fit_predictor(measured, args.predictor_samples, args.predictor_model, args.seed)
    fit = predictor.report
    print(f"accuracy predictor ({fit.model}) fitted on {fit.samples} measured subnets: held-out rank correlation "
          f"{fit.spearman:.3f}, RMSE {100 * fit.rmse:.2f} points ({fit.held_out} held out)", flush=True)
    return predictor, {"kind": "predictor", "description": "accuracy predictor fitted on supernet measurements",
                       **fit.to_dict()}


def search(args) -> int:
    board = board_of(args.board)
    cons = _constraints(args, board)
    data_spec = _data_spec(args)
    if args.accuracy != "macs" and data_spec is None:
        raise TinyNasError(f"--accuracy {args.accuracy}: the supernet needs data: --data DIR (DIR/<class>/<image>) "
                           "or --digits (or --accuracy macs, no data)")
    if args.supernet is not None and args.accuracy == "macs":
        raise TinyNasError("--supernet: accuracy from a supernet; not with --accuracy macs")
    if args.supernet is not None and (args.widths is not None or args.resolutions is not None):
        raise TinyNasError("--widths / --resolutions: the space is the --supernet checkpoint's; leave them out")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    choice, measured = None, None
    if args.supernet is not None:
        measured = _supernet_accuracy(args, data_spec, Path(args.supernet))
        space = measured.space
        print(f"search space: the supernet's ({args.supernet}): w{space.width_mult:g}, resolutions "
              f"{', '.join(map(str, space.resolutions))}", flush=True)
    else:
        widths = _numbers(args.widths or DEFAULT_WIDTHS, "--widths", float)
        resolutions = _numbers(args.resolutions or DEFAULT_RESOLUTIONS, "--resolutions", int)
        base = SearchSpace(num_classes=args.classes)
        if data_spec is not None:       # classes and channels from the data (checked before stage 1)
            from .data import load
            data = load(data_spec, max(resolutions), args.channels, args.val_fraction, args.seed, args.test_fraction,
                        args.test_fold)
            base = SearchSpace(num_classes=len(data.classes), in_channels=data.in_channels)
        choice = optimize_space(base, widths, resolutions, board.name, cons, samples=args.samples,
                                patch=args.patch, seed=args.seed)
        (out / "space.md").write_text(choice.table() + "\n")
        choice.plot(out / "space_cdf.png")
        print(choice.table())
        space = choice.space(base)
        if args.accuracy != "macs":
            measured = _supernet_accuracy(args, data_spec, _train_supernet(args, data_spec, space, out / "supernet"))
    model = CostModel(space, board.name, patch=args.patch, sram_budget=cons.sram_bytes)
    accuracy, about = _accuracy(args, space, measured)
    res = _evolve(args, space, model, accuracy, cons)
    if about["kind"] == "predictor":
        from .accuracy import verify
        model.evaluate(list(measured.cache))           # the predictor's samples compete if they fit
        winner, _ = verify(measured, [c for _, c in res.population], args.verify_top,
                           lambda c: cons.fits(model.get_efficiency(c)))
        about["verified_top"] = min(args.verify_top, len(res.population))
        about["predicted_best"] = res.score
        res = replace(res, candidate=winner, score=accuracy.predict_acc([winner])[0],
                      efficiency=model.get_efficiency(winner))
    if measured is not None:
        about["best_measured"] = measured.measure(res.candidate)
        about["subnets_measured"] = measured.measured
        about["subnets_read"] = measured.loaded       # measured before by a search of the same supernet
        about["measuring_seconds"] = round(measured.seconds, 1)
        measured.save()
    evaluated = (sum(s.sampled for s in choice.subspaces) if choice is not None else 0) + res.evaluated
    result = {"board": board.name, "constraints": cons.__dict__, "patch": args.patch,
              "space": space.to_dict(), "candidate": res.candidate.to_dict(), "macs": space.macs(res.candidate),
              "predicted": res.efficiency.to_dict(), "latency": _latency(board, res.efficiency, args.latency_ms),
              "accuracy_predictor": about, "score": res.score,
              "history": res.history, "candidates_evaluated": evaluated, "seconds": round(time.time() - t0, 1)}
    (out / "search.json").write_text(json.dumps(result, indent=2) + "\n")
    e = res.efficiency
    lat = f", ~{result['latency']['predicted_ms']:.1f} ms at {board.clock_hz / 1e6:g} MHz" if result["latency"] else ""
    acc = f", accuracy {100 * about['best_measured']:.1f}% (supernet, validation)" if measured is not None else ""
    print(f"best on {board.name}: w{space.width_mult:g} r{res.candidate.r}, {result['macs']:,} MACs{acc}, "
          f"peak SRAM {e.peak_sram_bytes:,} B, Flash {e.flash_bytes:,} B, {e.instructions:,} instructions{lat}"
          f"{', patches ' + e.patch if e.patch else ''} ({evaluated} candidates in {result['seconds']} s); "
          f"wrote {out / 'search.json'}")
    if measured is not None and not args.no_deploy:
        from .pipeline import FinetuneConfig, deploy
        deploy(measured.net, res.candidate, model, measured.data, out,
               FinetuneConfig(epochs=args.finetune_epochs, seed=args.seed), cons)
    return 0


def _require(module: str):
    """An optional dependency of tinynas (the extra `nas`), or a one-line error saying how to install it."""
    import importlib
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise TinyNasError(f"tinynas needs {module} (the optional extra nas): pip install -e '.[nas]'") from None


def _evolve(args, space, model, accuracy, cons):
    """The evolutionary search with a progress bar over the generations (off where stderr is no terminal)."""
    tqdm = _require("tqdm").tqdm
    with tqdm(total=args.generations + 1, desc="evolution", leave=False, dynamic_ncols=True,
              disable=True if args.no_progress else None) as bar:
        def progress(_generation, best):
            bar.set_postfix(best=f"{best:.4g}")
            bar.update()
        return EvolutionSearch(space, model, accuracy, cons, population=args.population,
                               seed=args.seed).run(args.generations, progress)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="tinynas", description="Search networks that fit a microcontroller.")
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("search", help="space optimization + evolutionary search within SRAM / Flash budgets")
    s.add_argument("--board", required=True)
    s.add_argument("--sram", required=True, help="peak SRAM budget, e.g. 128KB")
    s.add_argument("--flash", required=True, help="Flash budget, e.g. 512KB")
    s.add_argument("--max-instructions", type=int, default=None, help="latency limit in instructions")
    s.add_argument("--latency-ms", type=float, default=None,
                   help="latency limit in ms: predicted instructions / the board's clock (about one instruction "
                        "per cycle assumed; an estimate)")
    s.add_argument("--patch", action="store_true", help="allow patch-based inference of the first stage")
    s.add_argument("--widths", default=None, help=f"width multipliers of stage 1 (default {DEFAULT_WIDTHS})")
    s.add_argument("--resolutions", default=None, help=f"resolutions of stage 1 (default {DEFAULT_RESOLUTIONS})")
    s.add_argument("--samples", type=int, default=20, help="networks sampled per (width, resolution)")
    s.add_argument("--population", type=int, default=16)
    s.add_argument("--generations", type=int, default=5)
    s.add_argument("--classes", type=int, default=10, help="classes without data (--accuracy macs)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("-o", "--out", default="tinynas_out")
    a = s.add_argument_group("accuracy (see tinynas.accuracy)")
    a.add_argument("--accuracy", choices=("auto", "supernet", "predictor", "macs"), default="auto",
                   help="supernet: measured per candidate; predictor: fitted on --predictor-samples measured "
                        "subnets; auto: measured when the search asks no more candidates than the predictor "
                        "needs measured, else the predictor; macs: log10 MACs, no supernet (fast)")
    a.add_argument("--data", default=None, help="image folder DIR/<class>/<image>")
    a.add_argument("--digits", action="store_true", help="the built-in digits demo (scikit-learn's 8x8 digits)")
    a.add_argument("--channels", type=int, default=None, help="image channels, 1 or 3 (default: digits 1, folders 3)")
    a.add_argument("--val-fraction", type=float, default=0.2,
                   help="validation split held out from training: the search measures candidates on it")
    a.add_argument("--test-fraction", type=float, default=0.2,
                   help="test split held out from training, search and fine-tuning: the deployed network's accuracy "
                        "on the board is measured on it (0: none, then on the validation split)")
    a.add_argument("--test-fold", type=int, default=0, help="which --test-fraction slice of each class is the test split")
    a.add_argument("--supernet", default=None, metavar="CKPT",
                   help="a trained supernet's checkpoint.pt (its space is searched; stage 1 is skipped)")
    a.add_argument("--supernet-epochs", type=int, default=10, help="epochs of the supernet trained without --supernet")
    a.add_argument("--predictor-samples", type=int, default=200, help="measured subnets the predictor is fitted on")
    a.add_argument("--predictor-model", choices=("mlp", "ridge"), default="mlp")
    a.add_argument("--verify-top", type=int, default=8,
                   help="with the predictor: the last population's best K are measured; the best measured "
                        "network that fits wins, from those and the predictor's samples")
    a.add_argument("--finetune-epochs", type=int, default=3,
                   help="epochs of fine-tuning of the winner before it is quantized and run on the board")
    a.add_argument("--no-deploy", action="store_true",
                   help="stop after the search (no fine-tuning, quantization, compilation nor run on the board)")
    a.add_argument("--device", default="auto", help="auto, cpu or cuda (supernet training and accuracy)")
    a.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    return te.run_command("tinynas", lambda: search(args), user_errors=(TinyNasError,))


if __name__ == "__main__":
    sys.exit(main())
