"""The `tinytrain` command line: plan, compile (the training firmware), fit (train on the host)
and run (train on a board).

Built on tinyengine's public API; every error is one line on stderr with exit code 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

import numpy as np

import tinyengine as te

from . import data as dm
from . import firmware
from . import fit as fm
from . import graph as tgm
from . import memory
from . import report as rp
from . import scheme as sc
from .grad_rules import GradientError

DEFAULT_EPOCHS = 4       # fit and run: the digits demo's settings (bench/train.py), tuned on
DEFAULT_LR = 0.02        # the host simulation; lr 0.05 without a schedule diverged there
DEFAULT_SCHEDULE = "cosine"


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model the compiler reads: int8 .tflite, QDQ .onnx, or float .onnx "
                                 "with --calibration")
    p.add_argument("--classes", type=int, required=True, help="classes of the new head")
    p.add_argument("--board", default="stm32f746", help="target board (see `tinyengine boards`)")
    p.add_argument("--seed", type=int, default=0, help="seed of the new head's weights")
    s = p.add_argument_group("training scheme (tinytrain/scheme.py; default: a sparse scheme "
                             "that fits the board, memory.default_scheme)")
    s.add_argument("--scheme", metavar="S.json", help="scheme file (bias_last, weights, full)")
    s.add_argument("--bias-last", type=int, metavar="K", help="train the biases of the last K layers")
    s.add_argument("--weights", metavar="LAYER:RATIO,...",
                   help="train the weights of LAYER (node name or index among the trainable "
                        "layers), the RATIO in (0, 1] of its output channels of largest magnitude")
    s.add_argument("--full", action="store_true", help="train everything (full backpropagation)")
    te.Calibration.add_arguments(p)
    o = p.add_argument_group("optimizer")
    o.add_argument("--lr", type=float, default=DEFAULT_LR,
                   help=f"SGD learning rate (default {DEFAULT_LR})")
    o.add_argument("--momentum", type=float, default=0.0, help="SGD momentum in [0, 1) (default 0)")
    o.add_argument("--no-qas", action="store_true", help="no quantization-aware scaling")


def compile_options(args) -> te.CompileOptions:
    """The CompileOptions of --board and the calibration options (a float ONNX model's),
    for tinytrain.graph.forward_graph."""
    return te.CompileOptions(board=args.board, calibration=te.Calibration.from_args(args))


def scheme_option(args) -> sc.Scheme | None:
    """The scheme of --scheme or of the flags (checked before the model is read); None for
    neither (then memory.default_scheme)."""
    flags = args.bias_last is not None or args.weights or args.full
    if args.scheme and flags:
        raise sc.SchemeError("--scheme and --bias-last / --weights / --full exclude each other")
    if args.scheme:
        return sc.load(args.scheme)
    return sc.from_flags(args.bias_last, args.weights, args.full) if flags else None


def _what(t) -> list:
    return (["bias"] if t.bias else []) + \
        ([f"{len(t.channels)} weight channels"] if t.channels else [])


def trained_layers(tg) -> str:
    """The trained layers of a training graph, as one line."""
    return ", ".join(f"{name} ({' + '.join(_what(t))})" for name, t in tg.targets.items())


def _plan(args) -> int:
    te.get_board(args.board)
    scheme = scheme_option(args)
    fwd = tgm.forward_graph(args.model, args.board, args.classes, args.seed, compile_options(args))
    opt = dict(lr=args.lr, momentum=args.momentum, qas=not args.no_qas)
    scheme = scheme or memory.default_scheme(fwd, args.board, **opt)
    tg = tgm.build(fwd, scheme, **opt)
    p = memory.plan(tg, args.board)
    print(f"model        {args.model} ({len(fwd.nodes)} forward nodes, {args.classes} classes)")
    layers = trained_layers(tg)
    if scheme.source == "default scheme":
        print(f"scheme       default: biases of the last {scheme.bias_last} layers, weights "
              f"{', '.join(f'{n}:{r}' for n, r in scheme.weights) or 'none'} (besides the head)")
    print(f"trained      {layers}")
    print(f"backward     {len(tg.graph.nodes) - len(fwd.nodes)} nodes")
    print(f"peak SRAM    {p.breakdown()} on {p.board} "
          f"({p.sram_bytes or 'no limit of'} bytes)")
    try:
        full = memory.plan(tgm.build(fwd, sc.Scheme(full=True), **opt), args.board)
        print(f"full backprop {full.breakdown()}, planned the same way "
              f"({full.peak_sram_bytes / max(p.peak_sram_bytes, 1):.1f}x)")
    except (tgm.TrainGraphError, GradientError) as e:
        print(f"full backprop not possible: {' '.join(str(e).split())}")
    memory.check_fits(p, f"{args.model}: the training graph")
    return 0


def _compile(args) -> int:
    te.get_board(args.board)
    scheme = scheme_option(args)
    p = firmware.compile_training(
        args.model, classes=args.classes, scheme=scheme, board=args.board, out_dir=args.out,
        epochs=args.epochs, lr=args.lr, momentum=args.momentum, lr_schedule=args.lr_schedule,
        qas=not args.no_qas, seed=args.seed, calibration=compile_options(args).calibration)
    m = p.manifest
    print(f"wrote {p.dir}: te_train_step / te_predict of {args.model} for {args.classes} "
          f"classes on {p.plan.board}")
    print(f"trained      {len(m['trained'])} layers, {m['backward_nodes']} backward nodes "
          f"({m['scheme']['source']})")
    print(f"peak SRAM    {p.plan.breakdown()}")
    print(f"build / run  make -C {p.dir} && make -C {p.dir} run  (train.bin, test.bin there: "
          f"records of {int(np.prod(p.input_shape))} int8 input bytes + 1 label byte)")
    return 0


def _add_training_args(p: argparse.ArgumentParser) -> None:
    d = p.add_argument_group("data (tinytrain/data.py)")
    d.add_argument("--train", required=True, metavar="DIR|FILE.npz",
                   help="training samples: DIR/<class>/<image>, an .npz (x, y), or 'digits' "
                        "(scikit-learn's digits, the half kept to train)")
    d.add_argument("--test", required=True, metavar="DIR|FILE.npz",
                   help="held-out samples, as --train ('digits': the other half)")
    d.add_argument("--limit", type=int, metavar="N",
                   help="use at most N samples of each set (a quick check)")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                   help=f"passes over the training set (default {DEFAULT_EPOCHS})")
    t.add_argument("--lr-schedule", choices=fm.SCHEDULES, default=DEFAULT_SCHEDULE,
                   help=f"learning rate over the steps: constant, or cosine to 0 "
                        f"(default {DEFAULT_SCHEDULE})")


def _load_data(args, fwd):
    """(train Data, test Data) of --train / --test at the model's input shape."""
    shape = dm.input_shape(fwd)
    if args.limit is not None and args.limit < 1:
        raise dm.DataError(f"--limit must be >= 1, got {args.limit}")
    sets = []
    for opt, src in (("--train", args.train), ("--test", args.test)):
        if src == "digits":
            if args.classes != 10:
                raise dm.DataError(f"{opt} digits has 10 classes, but --classes {args.classes}")
            d = dm.digits(shape, args.seed)[0 if opt == "--train" else 1]
        else:
            d = dm.load(src, shape, args.classes)
        sets.append(dm.Data(d.x[:args.limit], d.y[:args.limit], d.source))
    return sets


def _training_setup(args):
    """Everything fit and run share: options, forward, data, scheme, training graph, plan."""
    te.get_board(args.board)
    explicit = scheme_option(args)
    opts = fm.Options(epochs=args.epochs, lr=args.lr, momentum=args.momentum,
                      lr_schedule=args.lr_schedule, qas=not args.no_qas,
                      float32=getattr(args, "float32", False))
    fwd = tgm.forward_graph(args.model, args.board, args.classes, args.seed,
                            compile_options(args))
    train, test = _load_data(args, fwd)
    opt = dict(lr=opts.lr, momentum=opts.momentum, qas=opts.qas)
    scheme = explicit or memory.default_scheme(fwd, args.board, **opt)
    tg = tgm.build(fwd, scheme, **opt)
    return opts, fwd, train, test, scheme, tg, memory.plan(tg, args.board)


def scheme_json(scheme: sc.Scheme, tg) -> dict:
    return {"source": scheme.source, "bias_last": scheme.bias_last,
            "weights": {str(k): r for k, r in scheme.weights}, "full": scheme.full,
            "trained": {name: _what(t) for name, t in tg.targets.items()}}


def _progress(total, desc: str, unit: str = "step"):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit=unit, mininterval=1.0, file=sys.stderr,
                dynamic_ncols=True, leave=False)


def _fit(args) -> int:
    if not args.host:
        raise fm.FitError("fit trains on the host: give --host (to train on a board, use "
                          "`tinytrain run`)")
    opts, fwd, train, test, scheme, tg, plan = _training_setup(args)
    print(f"model        {args.model} ({len(fwd.nodes)} forward nodes, {args.classes} classes)")
    print(f"data         {len(train)} training samples ({train.source}), {len(test)} held out "
          f"({test.source})")
    print(f"trained      {trained_layers(tg)}")
    print(f"host         {opts.mode} simulation, {opts.epochs} epochs, lr {opts.lr} "
          f"({opts.lr_schedule}), momentum {opts.momentum}, QAS {'on' if opts.qas else 'off'}")
    trainer = fm.HostTrainer(tg, opts)
    bar = _progress(trainer.work(len(train), len(test)), f"fit {opts.mode}")
    try:
        res = trainer.fit((dm.quantize(train.x), train.y), (dm.quantize(test.x), test.y),
                          bar=bar, on_epoch=lambda row: bar.write(rp.curve_line(row)))
    finally:
        bar.close()
    report = {"command": "fit", "model": str(args.model), "classes": args.classes,
              "mode": opts.mode, "options": dataclasses.asdict(opts),
              "scheme": scheme_json(scheme, tg), "plan": plan.as_dict(),
              "train_samples": len(train), "test_samples": len(test),
              "curve": rp.curve_json(res.curve), "test_accuracy": res.accuracy}
    for path in rp.write(args.out, report, {f"host {opts.mode}": res.curve},
                         f"{args.model} on the host ({opts.mode})"):
        print(f"wrote        {path}")
    print(f"accuracy     {100 * res.curve[0][2]:.2f} % before, {100 * res.accuracy:.2f} % after "
          f"{opts.epochs} epochs (held out, {len(test)} samples)")
    return 0


def _run(args) -> int:
    from . import device

    opts, fwd, train, test, scheme, tg, plan = _training_setup(args)
    memory.check_fits(plan, f"{args.model}: the training graph")
    print(f"model        {args.model} ({len(fwd.nodes)} forward nodes, {args.classes} classes)")
    print(f"data         {len(train)} training samples ({train.source}), {len(test)} held out "
          f"({test.source})")
    print(f"trained      {trained_layers(tg)}")
    print(f"board        {plan.board}: {opts.epochs} epochs, lr {opts.lr} ({opts.lr_schedule}), "
          f"momentum {opts.momentum}, QAS {'on' if opts.qas else 'off'}")
    bar = _progress(None, f"train on {plan.board}", "sample")

    def progress(done, total):
        bar.total = total
        bar.update(done - bar.n)

    try:
        project, res = device.train_on_board(
            args.model, classes=args.classes, scheme=scheme, board=args.board,
            out_dir=args.out, options=opts, train=train, test=test, seed=args.seed,
            timeout_s=args.timeout, progress=progress,
            calibration=compile_options(args).calibration)
    finally:
        bar.close()
    for row in res.curve:
        print(rp.curve_line(row))
    figures = device.result_json(project, res)
    full = device.full_backprop(fwd, args.board, lr=opts.lr, momentum=opts.momentum,
                                qas=opts.qas)
    report = {"command": "run", "model": str(args.model), "classes": args.classes,
              "board": plan.board, "options": dataclasses.asdict(opts),
              "scheme": scheme_json(scheme, tg), "train_samples": len(train),
              "test_samples": len(test), "curve": rp.curve_json(res.curve),
              "test_accuracy": float(res.curve[-1][2]), **figures,
              "full_backprop_plan": full}
    for path in rp.write(args.out, report, {f"{plan.board}": res.curve},
                         f"{args.model} on {plan.board}"):
        print(f"wrote        {path}")
    print(f"accuracy     {100 * res.curve[0][2]:.2f} % before, {100 * res.curve[-1][2]:.2f} % "
          f"after {opts.epochs} epochs (held out, {len(test)} samples)")
    print(f"peak SRAM    {res.peak_sram_bytes} bytes on the board (static data + measured "
          f"stack); planned {project.plan.breakdown()}")
    if "peak_sram_bytes" in full:
        print(f"full backprop {full['peak_sram_bytes']} bytes planned the same way "
              f"({full['peak_sram_bytes'] / max(project.plan.peak_sram_bytes, 1):.1f}x the "
              f"planned figure above)")
    else:
        print(f"full backprop not possible: {full['error']}")
    print(f"Flash        {res.flash_bytes} bytes")
    if res.step_instructions is not None:
        print(f"instructions {res.step_instructions} per training step, "
              f"{res.predict_instructions} per prediction")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tinytrain", description="on-device transfer learning for "
                                 "int8 models, compiled ahead of time")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("plan", help="the training graph's memory plan (peak SRAM) on a board")
    _add_model_args(p)
    p.set_defaults(func=_plan)
    p = sub.add_parser("compile", help="the training firmware: a C project with te_train_step, "
                       "te_predict and a main streaming train.bin / test.bin")
    _add_model_args(p)
    p.add_argument("--epochs", type=int, default=1, help="epochs of `make run` (default 1)")
    p.add_argument("--lr-schedule", choices=firmware.SCHEDULES, default="constant",
                   help="learning rate over the steps (default constant; cosine: to 0)")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="project folder")
    p.set_defaults(func=_compile)

    p = sub.add_parser("fit", help="train on the host in PyTorch (simulated int8 or float32)")
    _add_model_args(p)
    _add_training_args(p)
    p.add_argument("--host", action="store_true", help="train on the host (fit's only mode)")
    m = p.add_mutually_exclusive_group()
    m.add_argument("--int8", dest="float32", action="store_false",
                   help="simulate the device's int8 arithmetic (default)")
    m.add_argument("--float32", dest="float32", action="store_true",
                   help="train the same scheme in float32")
    p.add_argument("-o", "--out", default="tinytrain-fit", help="where report.json and "
                   "accuracy.png go (default tinytrain-fit/)")
    p.set_defaults(func=_fit, float32=False)

    p = sub.add_parser("run", help="compile, build and train on the (emulated) board")
    _add_model_args(p)
    _add_training_args(p)
    p.add_argument("-o", "--out", required=True, help="the generated project, report.json, "
                   "accuracy.png")
    p.add_argument("--timeout", type=float, default=3600, help="seconds the board may train")
    p.set_defaults(func=_run)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return te.run_command("tinytrain", lambda: args.func(args),
                          user_errors=(sc.SchemeError, tgm.TrainGraphError, GradientError,
                                       dm.DataError, fm.FitError))


if __name__ == "__main__":
    sys.exit(main())
