"""Training on a board (`tinytrain run`, bench/train.py): the training firmware compiled
(tinytrain.firmware.compile_training), built and run on the board or its emulator
(firmware.run_training), with the figures the report gives.
"""
from __future__ import annotations

import inspect

from . import data as dm
from . import graph as tgm
from . import memory
from . import scheme as sc
from .grad_rules import GradientError


def full_backprop(fwd, board: str, **optimizer) -> dict:
    """The plan of full backpropagation of the same network, planned the same way (or why it
    cannot be built), for the report's comparison."""
    try:
        p = memory.plan(tgm.build(fwd, sc.Scheme(full=True), **optimizer), board)
    except (tgm.TrainGraphError, GradientError) as e:
        return {"error": " ".join(str(e).split())}
    return p.as_dict()


def train_on_board(model, *, classes: int, scheme, board: str, out_dir, options, train, test,
                   seed: int = 0, timeout_s: float = 3600, on_line=None):
    """Compile, build and train; returns (TrainProject, TrainResult).  train / test:
    tinytrain.data.Data; options: tinytrain.fit.Options; on_line(text): each line the
    firmware prints, as it prints it (where run_training streams them)."""
    from . import firmware

    project = firmware.compile_training(
        model, classes=classes, scheme=scheme, board=board, out_dir=out_dir,
        epochs=options.epochs, lr=options.lr, momentum=options.momentum,
        lr_schedule=options.lr_schedule, qas=options.qas, seed=seed)
    extra = {}
    if on_line is not None and "on_line" in inspect.signature(firmware.run_training).parameters:
        extra["on_line"] = on_line
    result = firmware.run_training(project, train=(dm.quantize(train.x), train.y),
                                   test=(dm.quantize(test.x), test.y), timeout_s=timeout_s,
                                   **extra)
    return project, result


def result_json(project, result) -> dict:
    """The figures of a board run, as report.json gives them."""
    return {"peak_sram_bytes": int(result.peak_sram_bytes), "flash_bytes": int(result.flash_bytes),
            "step_instructions": int(result.step_instructions),
            "predict_instructions": int(result.predict_instructions),
            "stack_bytes": int(result.stack_bytes), "plan": project.plan.as_dict()}


def parse_epoch(line: str):
    """(epoch, mean loss or None, accuracy) of a TT_EPOCH line, None for any other line."""
    parts = line.split()
    if len(parts) != 5 or parts[0] != "TT_EPOCH":
        return None
    e, loss, correct, total = (int(v) for v in parts[1:])
    return e, (None if e == 0 else loss / 1e6), (correct / total if total else 0.0)
