"""The end of `tinynas search`: the winner fine-tuned, quantized, compiled and measured on the board.

`deploy(...)` takes the search's winner (a candidate of the supernet's space) and its predicted
figures (tinynas.cost.Efficiency), and:

1. fine-tunes the subnet with the weights it inherits from the supernet (`get_active_subnet`), its batch
   norm first recalibrated on training images as the search measured it, for a few epochs on the training
   split (SGD, cosine learning rate, batch norm in training mode), and keeps the weights of the epoch
   (0: the inherited ones) with the best accuracy on the validation split: early stopping by the
   validation split, never by the test split;
2. exports it to a float ONNX file (torch.onnx.export, batch norm folded by the exporter), its channels
   constant on the training split settled first (`SubNet.settle_constant_channels`: the same outputs,
   and the kernels tinynas.cost predicted);
3. quantizes it through tinyengine's ONNX + calibration path (`te.load_model` with calibration
   images of the training split) and compiles it for the board with the schedule the prediction
   used (`CostModel.options`: layer by layer, or the same patch schedule);
4. builds it and runs it on the board (QEMU, or the host) on the held-out test split (tinynas.data:
   never trained on, and the search never chose by it): the int8 accuracy is the device's argmax against
   its labels. Data without a test split (a checkpoint trained with test_fraction 0) is measured on the
   validation split instead, and report.json says so: the search chose by that split, so it flatters;
5. compares what tinyengine measured with what the search predicted, and writes `report.json`.

What is compared (`Agreement`):
- peak SRAM, exactly: the compile's report (`peak_sram_bytes` = arena + the board's stack
  allowance, what `tinyengine compile` states) against the prediction. tinynas.lower builds the graph
  the ONNX frontend makes of the exported subnet node for node (padding, ADD operand order, MEAN
  head), and the planner's decisions that see weight values (packed per-channel tables, optional
  kernel scratch) are granted only where the arena stays the same, so real weights cannot change the
  arena. The run's own figure (static SRAM + the stack the inference used) is reported beside it.
- Flash, within 3%: the built firmware's size against constants + the fitted code model;
- instructions, within 10%: QEMU's count of one inference against the per-kernel fit (boards under
  QEMU only; the host has no count).
"""
from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import tinyengine as te
import torch
import torch.nn.functional as F

from .cost import CostModel, Efficiency
from .data import Dataset
from .errors import TinyNasError
from .space import Candidate, SearchSpace
from .supernet import SubNet, SuperNet
from .training import accuracy, calibration_batches, recalibrate_bn, resize

SRAM_TOLERANCE = 0.0          # peak SRAM: exact
FLASH_TOLERANCE = 0.03
INSTRUCTION_TOLERANCE = 0.10


@dataclass
class FinetuneConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.05              # measured on bench/nas.py's folds: 0.01 for 5 epochs left winners 1-4 points lower
    momentum: float = 0.9
    weight_decay: float = 4e-5
    calib_samples: int = 200      # calibration images from the training split
    bn_batches: int = 4           # batches of training images that recalibrate batch norm before fine-tuning
    seed: int = 0

    def check(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or self.calib_samples < 1 or self.lr <= 0 or self.bn_batches < 0:
            raise TinyNasError(f"fine-tuning: epochs >= 0, batch size >= 1, calibration samples >= 1 and "
                               f"a positive learning rate expected, got {self.epochs}, {self.batch_size}, "
                               f"{self.calib_samples}, {self.lr}")


@dataclass
class Finetuned:
    losses: list[float]           # mean training loss of each epoch
    val_accuracy: list[float]     # validation accuracy before fine-tuning (index 0) and after each epoch
    kept_epoch: int               # the epoch whose weights were kept (the best validation accuracy, the later on ties)


def finetune(subnet: SubNet, data: Dataset, cfg: FinetuneConfig) -> Finetuned:
    """`cfg.epochs` epochs of SGD with cross-entropy on the training split at the candidate's resolution;
    the subnet keeps the weights of the epoch with the best validation accuracy (module docstring)."""
    import copy
    r = subnet.candidate.r
    x, y = resize(data.train_x, r), data.train_y
    val_x = resize(data.val_x, r)
    best = (accuracy(subnet, val_x, data.val_y, 256), 0, copy.deepcopy(subnet.state_dict()))
    val_accs = [best[0]]
    g = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.SGD(subnet.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    steps = max(1, len(x) // cfg.batch_size)
    total, step, losses = steps * cfg.epochs, 0, []
    for _ in range(cfg.epochs):
        subnet.train()
        order = torch.randperm(len(x), generator=g)
        run = 0.0
        for i in range(steps):
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            for group in opt.param_groups:
                group["lr"] = 0.5 * cfg.lr * (1 + math.cos(math.pi * step / total))
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(subnet(x[idx]), y[idx])
            loss.backward()
            opt.step()
            run += loss.item()
            step += 1
        losses.append(run / steps)
        val_accs.append(accuracy(subnet, val_x, data.val_y, 256))
        if val_accs[-1] >= best[0]:
            best = (val_accs[-1], len(losses), copy.deepcopy(subnet.state_dict()))
    subnet.load_state_dict(best[2])
    subnet.eval()
    return Finetuned(losses, val_accs, best[1])


def export_onnx(subnet: SubNet, path) -> Path:
    """The subnet (eval mode) as a float ONNX file with input `input` (1 x C x r x r) and output `logits`."""
    path = Path(path)
    c = subnet.candidate
    subnet.eval()
    dummy = torch.zeros(1, subnet.space.in_channels, c.r, c.r)
    with warnings.catch_warnings():
        # the TorchScript exporter folds batch norm into the convolutions: the graph tinynas.lower builds
        warnings.simplefilter("ignore")
        torch.onnx.export(subnet, (dummy,), str(path), input_names=["input"], output_names=["logits"],
                          dynamo=False)
    return path


def compile_onnx(onnx_path, calibration: np.ndarray, options: te.CompileOptions) -> te.Compiled:
    """The float ONNX model quantized with `calibration` (N x C x r x r) and compiled with `options`."""
    opts = replace(options, calibration=te.Calibration(calibration))
    return te.compile_model(str(onnx_path), opts)


def device_accuracy(compiled: te.Compiled, out_dir, x: torch.Tensor, y: torch.Tensor) -> tuple[float, object]:
    """Build and run the compiled model on the board on images `x` (N x C x r x r, the model's own input):
    the fraction whose argmax equals `y`, and the run (te.RunResult)."""
    if len(x) == 0:
        raise TinyNasError("device accuracy: no held-out images")
    records = [[x[i:i + 1].numpy().astype(np.float32)] for i in range(len(x))]
    result = te.build_and_run(compiled, out_dir, records)
    result.predictions = [int(np.argmax(out[0])) for out in result.outputs]
    return float(np.mean(np.array(result.predictions) == y.numpy())), result


@dataclass
class Agreement:
    sram_equal: bool
    flash_rel_err: float
    instructions_rel_err: float | None     # None where the board has no instruction count (host)

    @property
    def ok(self) -> bool:
        return (self.sram_equal and abs(self.flash_rel_err) <= FLASH_TOLERANCE
                and (self.instructions_rel_err is None or abs(self.instructions_rel_err) <= INSTRUCTION_TOLERANCE))


def agreement(predicted: dict, measured: dict) -> Agreement:
    def rel(key):
        if measured.get(key) is None or predicted.get(key) is None:
            return None
        return round((measured[key] - predicted[key]) / predicted[key], 5)
    return Agreement(measured["peak_sram_bytes"] == predicted["peak_sram_bytes"], rel("flash_bytes"),
                     rel("instructions"))


def deploy(net: SuperNet, c: Candidate, model: CostModel, data: Dataset, out, cfg: FinetuneConfig | None = None,
           constraints=None, log=print) -> dict:
    """Fine-tune, export, quantize, compile, run and compare (module docstring); writes OUT/report.json,
    OUT/candidate.json, OUT/model.onnx and the C project under OUT/project. Returns the report."""
    cfg = cfg or FinetuneConfig()
    cfg.check()
    t0 = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    space = model.space
    _check_data(net.space, data)
    net.space.validate(c)
    predicted: Efficiency = model.get_efficiency(c)

    torch.manual_seed(cfg.seed)
    subnet = net.get_active_subnet(c)
    if cfg.bn_batches:                      # the statistics the search measured the subnet with
        recalibrate_bn(subnet, [resize(b, c.r) for b in calibration_batches(data.train_x, cfg.seed, cfg.bn_batches,
                                                                            cfg.batch_size)])
        for bn in (m for m in subnet.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.momentum = 0.1               # back to the running average fine-tuning updates
    if data.test_x is not None:
        held_x, held_y, index = data.test_x, data.test_y, data.test_index
        split = "test split (held out from training, search and fine-tuning)"
    else:
        held_x, held_y, index = data.val_x, data.val_y, data.val_index
        split = "validation split (never trained on; the search chose by it)"
    held = resize(held_x, c.r)
    inherited = accuracy(subnet, held, held_y, 256)
    tuned = finetune(subnet, data, cfg)
    settled = subnet.settle_constant_channels(resize(data.train_x, c.r))     # the kernels the cost model predicts
    float_acc = accuracy(subnet, held, held_y, 256)
    log(f"fine-tuned {cfg.epochs} epoch(s), kept epoch {tuned.kept_epoch} (validation "
        f"{100 * tuned.val_accuracy[tuned.kept_epoch]:.1f}%): float accuracy {100 * inherited:.1f}% inherited -> "
        f"{100 * float_acc:.1f}% on {len(held)} held-out images ({split.split(' (')[0]})")

    onnx_path = export_onnx(subnet, out / "model.onnx")
    g = torch.Generator().manual_seed(cfg.seed + 1)
    pick = torch.randperm(len(data.train_x), generator=g)[:cfg.calib_samples]
    calib = resize(data.train_x[pick], c.r).numpy().astype(np.float32)
    compiled = compile_onnx(onnx_path, calib, model.options(predicted))
    project = out / "project"
    compiled_report = te.write_project(compiled, project)
    compile_sram = int(compiled_report["peak_sram_bytes"])
    int8_acc, run = device_accuracy(compiled, project, held, held_y)
    rep = compiled.report
    measured = {"peak_sram_bytes": compile_sram, "arena_bytes": int(rep["arena_bytes"]),
                "flash_bytes": int(rep["flash_bytes"]), "const_bytes": int(rep["const_bytes"]),
                "instructions": run.instructions, "run_peak_sram_bytes": rep.get("peak_sram_bytes"),
                "stack_bytes_used": run.stack_bytes,
                "patch": compiled.plan.patch.spec() if compiled.plan.patch is not None else None}
    pred = predicted.to_dict()
    agree = agreement(pred, measured)
    (out / "predictions.json").write_text(json.dumps({"indices": None if index is None else index.tolist(), "labels": held_y.tolist(), "device": run.predictions,
                                                       "float": _argmax(subnet, held)}) + "\n")
    candidate_path = out / "candidate.json"
    candidate_path.write_text(json.dumps({"space": space.to_dict(), "candidate": c.to_dict()}, indent=1) + "\n")
    report = {
        "board": model.board.name,
        "budgets": ({"sram_bytes": constraints.sram_bytes, "flash_bytes": constraints.flash_bytes,
                     "max_instructions": constraints.max_instructions} if constraints is not None else None),
        "candidate": c.to_dict(), "candidate_file": str(candidate_path), "onnx": str(onnx_path),
        "project": str(project), "predictions": str(out / "predictions.json"),
        "macs": space.macs(c), "params": space.params(c),
        "predicted": pred, "measured": measured, "agreement": {**asdict(agree), "ok": agree.ok},
        "accuracy": {"float": float_acc, "float_inherited": inherited, "int8_device": int8_acc,
                     "held_out_images": len(held), "split": split},
        "finetune": {**asdict(cfg), **asdict(tuned), "constant_channels_settled": settled},
        "seconds": round(time.time() - t0, 1),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    log(summary(report))
    return report


def summary(report: dict) -> str:
    p, m, a = report["predicted"], report["measured"], report["agreement"]
    instr = (f"instructions {m['instructions']:,} (predicted {p['instructions']:,}, "
             f"{100 * a['instructions_rel_err']:+.1f}%)" if m["instructions"] is not None
             else "instructions: not counted on this board")
    return (f"{report['board']}: peak SRAM {m['peak_sram_bytes']:,} B (predicted {p['peak_sram_bytes']:,}, "
            f"{'equal' if a['sram_equal'] else 'DIFFERENT'}), Flash {m['flash_bytes']:,} B (predicted "
            f"{p['flash_bytes']:,}, {100 * a['flash_rel_err']:+.1f}%), {instr}; int8 accuracy on the device "
            f"{100 * report['accuracy']['int8_device']:.1f}% (float {100 * report['accuracy']['float']:.1f}%) on "
            f"{report['accuracy']['held_out_images']} held-out images")


@torch.no_grad()
def _argmax(subnet: SubNet, x: torch.Tensor) -> list[int]:
    subnet.eval()
    return [int(v) for i in range(0, len(x), 256) for v in subnet(x[i:i + 256]).argmax(1)]


def _check_data(space: SearchSpace, data: Dataset) -> None:
    if data.in_channels != space.in_channels or len(data.classes) != space.num_classes:
        raise TinyNasError(f"data: {data.in_channels} channel(s) and {len(data.classes)} classes, the supernet was "
                           f"trained for {space.in_channels} and {space.num_classes}")

