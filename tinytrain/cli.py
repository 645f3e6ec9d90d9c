"""The `tinytrain` command line: plan, compile (run and fit come later).

Built on tinyengine's public API; every error is one line on stderr with exit code 2.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

import tinyengine as te

from . import firmware
from . import graph as tgm
from . import memory
from . import scheme as sc
from .grad_rules import GradientError


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
    o.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (default 0.05)")
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


def _plan(args) -> int:
    te.get_board(args.board)
    scheme = scheme_option(args)
    fwd = tgm.forward_graph(args.model, args.board, args.classes, args.seed, compile_options(args))
    opt = dict(lr=args.lr, momentum=args.momentum, qas=not args.no_qas)
    scheme = scheme or memory.default_scheme(fwd, args.board, **opt)
    tg = tgm.build(fwd, scheme, **opt)
    p = memory.plan(tg, args.board)
    print(f"model        {args.model} ({len(fwd.nodes)} forward nodes, {args.classes} classes)")
    layers = ", ".join(f"{name} ({' + '.join(_what(t))})" for name, t in tg.targets.items())
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
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return te.run_command("tinytrain", lambda: args.func(args),
                          user_errors=(sc.SchemeError, tgm.TrainGraphError, GradientError))


if __name__ == "__main__":
    sys.exit(main())
