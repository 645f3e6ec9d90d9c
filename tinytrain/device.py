"""Training on a board (`tinytrain run`, bench/train.py): the training firmware compiled
(tinytrain.firmware.compile_training), built and run on the board or its emulator
(firmware.run_training), with the figures the report gives.
"""
from __future__ import annotations

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
                   seed: int = 0, timeout_s: int = 3600, progress=None, calibration=None):
    """Compile, build and train; returns (TrainProject, TrainResult).  train / test:
    tinytrain.data.Data; options: tinytrain.fit.Options; progress(done, total): called as
    the firmware reports each training step and prediction; calibration: a float ONNX
    model's (te.Calibration)."""
    from . import firmware

    project = firmware.compile_training(
        model, classes=classes, scheme=scheme, board=board, out_dir=out_dir,
        epochs=options.epochs, lr=options.lr, momentum=options.momentum,
        lr_schedule=options.lr_schedule, qas=options.qas, seed=seed, calibration=calibration)
    result = firmware.run_training(project, train=(dm.quantize(train.x), train.y),
                                   test=(dm.quantize(test.x), test.y), timeout_s=int(timeout_s),
                                   progress=progress)
    return project, result


def result_json(project, result) -> dict:
    """The figures of a board run, as report.json gives them."""
    def n(v):
        return None if v is None else int(v)      # instructions and stack: boards only

    return {"peak_sram_bytes": n(result.peak_sram_bytes), "flash_bytes": n(result.flash_bytes),
            "step_instructions": n(result.step_instructions),
            "predict_instructions": n(result.predict_instructions),
            "stack_bytes": n(result.stack_bytes), "plan": project.plan.as_dict()}
