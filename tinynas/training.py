"""Supernet training: sandwich rule with in-place distillation, on one process or under torchrun.

Each step takes one global batch and, on the same weights, the largest candidate (cross-entropy with
the labels), the smallest and `n_random` random ones (soft cross-entropy with the largest's
detached softmax: in-place distillation), each at its own resolution (the batch resized bilinearly),
gradients summed over the candidates, then one SGD step (momentum, weight decay, cosine learning rate
per step).

Everything a step does is a function of (seed, epoch, step), never of the process: the data order
comes from a DistributedSampler seeded with the seed and the epoch (one replica on a single process),
and the step's candidates from `random.Random("tinynas-sandwich:<seed>:<step>")`, so every rank
samples the same candidates, and a run resumed from a checkpoint continues exactly as an
uninterrupted one.

Distributed (`torchrun --nproc_per_node N -m tinynas.supernet train ...`, unchanged): gloo on CPU,
nccl on GPU; `--batch-size` is the global batch, each rank takes 1/N of it; batch norm statistics are
synchronised over the ranks (see tinynas.supernet.batch_norm), so N ranks compute what one process
computes with the whole batch (up to the order of float sums). Buffers are not broadcast at each
forward (forward_sync_buffers=False): synchronised batch norm keeps them equal on every rank. DistributedDataParallel runs with find_unused_parameters=True: blocks
beyond a candidate's depth get no gradient in that pass, and DDP must be told to expect that. (The
alternative, adding 0 x every parameter to the loss so all look used, works too but hides real
mistakes; the search over DDP's graph costs little next to the forward passes.) The passes of a step
but the last run under `no_sync()`: their gradients accumulate locally and the last backward averages
the accumulated sums (every parameter is used in a step: the largest candidate uses them all).

Checkpoints (rank 0, after every epoch, `OUT/checkpoint.pt`): model, optimizer, epoch, step, RNG states,
search space and data classes. `--resume` continues from it.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .data import Dataset, load
from .errors import TinyNasError
from .space import Candidate, SearchSpace
from .supernet import SubNet, SuperNet

CHECKPOINT = "checkpoint.pt"
FORMAT = "tinynas-supernet-1"


@dataclass
class TrainConfig:
    data: str                          # 'digits' or DIR/<class>/<image>
    out: Path
    space: SearchSpace = field(default_factory=SearchSpace)   # in_channels / num_classes from the data
    epochs: int = 10
    batch_size: int = 64               # global: split over the ranks
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 4e-5
    n_random: int = 2                  # random candidates per step besides the largest and the smallest
    distill: bool = True               # in-place distillation (False: every candidate on the labels)
    seed: int = 0
    steps_per_epoch: int | None = None  # cap on the steps of an epoch (None: the whole training split)
    stop_after: int | None = None      # stop after this many epochs of this run (resume later)
    val_fraction: float = 0.2
    test_fraction: float = 0.2         # held out from training and search: the deployed network's test split
    test_fold: int = 0                 # which slice of each class is the test split (tinynas.data)
    channels: int | None = None
    calib_batches: int = 4             # BN recalibration batches before each evaluation
    evaluate: bool = True
    resume: bool = False
    device: str = "auto"               # auto | cpu | cuda
    progress: bool = True

    def check(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise TinyNasError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("n_random", "calib_batches"):
            if getattr(self, name) < 0:
                raise TinyNasError(f"--{name.replace('_', '-')} must be at least 0, got {getattr(self, name)}")
        for name in ("steps_per_epoch", "stop_after"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise TinyNasError(f"--{name.replace('_', '-')} must be at least 1, got {v}")
        if self.lr <= 0:
            raise TinyNasError(f"--lr must be positive, got {self.lr}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise TinyNasError(f"--device must be auto, cpu or cuda, got {self.device}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise TinyNasError("--device cuda: no CUDA device is available (use --device cpu)")


@dataclass
class Distributed:
    """This process's place: rank, world size, device, and the group that synchronises batch norm."""
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    bn_group: object = None
    owns_group: bool = False

    @classmethod
    def from_env(cls, device: str) -> "Distributed":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        local = int(os.environ.get("LOCAL_RANK", "0"))
        dev = torch.device(f"cuda:{local}" if cuda else "cpu")
        if cuda:
            torch.cuda.set_device(dev)
        if world == 1:
            return cls(device=dev)
        owns = not dist.is_initialized()
        if owns:
            dist.init_process_group("nccl" if cuda else "gloo")
        # batch norm's all-reduces get a group of their own, apart from DDP's gradient buckets
        return cls(dist.get_rank(), dist.get_world_size(), dev, dist.new_group(), owns)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def mean(self, values: list[float]) -> list[float]:
        """`values` averaged over the ranks (each rank's losses are over its part of the batch)."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return (t / self.world).tolist()

    def close(self) -> None:
        if self.owns_group:
            dist.destroy_process_group()


def sandwich(space: SearchSpace, seed: int, step: int, n_random: int) -> list[Candidate]:
    """The candidates of a step: largest, smallest, then `n_random` random ones (same on every rank)."""
    rng = random.Random(f"tinynas-sandwich:{seed}:{step}")
    return [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(n_random)]


def resize(x: torch.Tensor, r: int) -> torch.Tensor:
    return x if x.shape[-1] == r else F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False,
                                                    antialias=r < x.shape[-1])


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(target * F.log_softmax(logits, dim=1)).sum(1).mean()


def train_step(model, net: SuperNet, optimizer, x, y, candidates: list[Candidate], distill: bool) -> list[float]:
    """One sandwich step (the first candidate is the teacher); the loss of each candidate."""
    optimizer.zero_grad(set_to_none=True)
    teacher, losses = None, []
    for i, c in enumerate(candidates):
        net.set_active(c)
        last = i == len(candidates) - 1
        sync = model.no_sync() if hasattr(model, "no_sync") and not last else contextlib.nullcontext()
        with sync:
            logits = model(resize(x, c.r))
            if teacher is None or not distill:
                loss = F.cross_entropy(logits, y)
                if teacher is None:
                    teacher = logits.detach().softmax(1)
            else:
                loss = soft_cross_entropy(logits, teacher)
            loss.backward()
        losses.append(loss.item())
    optimizer.step()
    return losses


def cosine_lr(base: float, step: int, total: int) -> float:
    return 0.5 * base * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))


@torch.no_grad()
def recalibrate_bn(subnet: SubNet, batches) -> None:
    """Running statistics of every BN of `subnet` re-estimated as the plain average over `batches`."""
    bns = [m for m in subnet.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None          # cumulative average
    subnet.train()
    for x in batches:
        subnet(x)
    subnet.eval()


@torch.no_grad()
def accuracy(subnet: SubNet, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    subnet.eval()
    correct = sum(int((subnet(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum()) for i in range(0, len(x), batch))
    return correct / len(x)


def calibration_batches(train_x: torch.Tensor, seed: int, batches: int, batch_size: int) -> list[torch.Tensor]:
    """`batches` seeded random batches of training images for BN recalibration (the same for every candidate)."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train_x), generator=g)[:batches * batch_size]
    return [train_x[order[i:i + batch_size]] for i in range(0, len(order), batch_size)]


def measure(net: SuperNet, c: Candidate, calib: list[torch.Tensor], val_x: torch.Tensor, val_y: torch.Tensor,
            device) -> float:
    """Validation accuracy of `c`'s static subnet after BN recalibration on `calib` (each resized to c.r)."""
    sub = net.get_active_subnet(c).to(device)
    if calib:
        recalibrate_bn(sub, [resize(x.to(device), c.r) for x in calib])
    return accuracy(sub, resize(val_x.to(device), c.r), val_y.to(device), 256)


def evaluate(net: SuperNet, c: Candidate, data: Dataset, cfg: TrainConfig, device) -> float:
    """Validation accuracy of `c` after BN recalibration on seeded training batches."""
    calib = calibration_batches(data.train_x, cfg.seed, cfg.calib_batches, cfg.batch_size)
    return measure(net, c, calib, data.val_x, data.val_y, device)


def _rng_state(device) -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def read_checkpoint(path: Path, option: str) -> dict:
    """A checkpoint written by `train`, checked to be one (errors name `option`)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad checkpoint file
        raise TinyNasError(f"{option}: {path} is not a tinynas checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise TinyNasError(f"{option}: {path} is not a tinynas checkpoint (format {FORMAT} expected)")
    return ckpt


def _load_checkpoint(path: Path, space: SearchSpace, classes: list[str]) -> dict:
    if not path.is_file():
        raise TinyNasError(f"--resume: nothing to resume, {path} not found")
    ckpt = read_checkpoint(path, "--resume")
    if ckpt["space"] != space.to_dict():
        raise TinyNasError(f"--resume: {path} was trained on another search space")
    if ckpt["classes"] != classes:
        raise TinyNasError(f"--resume: {path} was trained on other classes ({len(ckpt['classes'])})")
    return ckpt


def train(cfg: TrainConfig) -> dict:
    """Train a supernet as `cfg` says; returns the last epoch's figures (also in OUT/log.jsonl)."""
    cfg.check()
    ctx = Distributed.from_env(cfg.device)
    try:
        return _train(cfg, ctx)
    finally:
        ctx.close()


def _train(cfg: TrainConfig, ctx: Distributed) -> dict:
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
    from tqdm import tqdm

    if cfg.batch_size % ctx.world:
        raise TinyNasError(f"--batch-size {cfg.batch_size} is not divisible by the {ctx.world} processes")
    data = load(cfg.data, max(cfg.space.resolutions), cfg.channels, cfg.val_fraction, cfg.seed, cfg.test_fraction,
                cfg.test_fold)
    space = replace(cfg.space, in_channels=data.in_channels, num_classes=len(data.classes))
    out = Path(cfg.out)
    if ctx.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "space.json").write_text(json.dumps(space.to_dict(), indent=1) + "\n")

    torch.manual_seed(cfg.seed)
    net = SuperNet(space).to(ctx.device)
    optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    epoch, step = 0, 0
    if cfg.resume:
        ckpt = _load_checkpoint(out / CHECKPOINT, space, data.classes)
        net.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        epoch, step = ckpt["epoch"], ckpt["step"]
        _set_rng_state(ckpt["rng"], ctx.device)
    model = net
    if ctx.world > 1:
        net.sync_batchnorm(ctx.bn_group)
        model = DistributedDataParallel(net, device_ids=[ctx.device] if ctx.device.type == "cuda" else None,
                                        find_unused_parameters=True, forward_sync_buffers=False)

    train_set = TensorDataset(data.train_x, data.train_y)
    sampler = DistributedSampler(train_set, num_replicas=ctx.world, rank=ctx.rank, shuffle=True, seed=cfg.seed,
                                 drop_last=True)
    loader = DataLoader(train_set, batch_size=cfg.batch_size // ctx.world, sampler=sampler, drop_last=True)
    if len(loader) == 0:
        raise TinyNasError(f"data {cfg.data}: {len(train_set)} training images are fewer than --batch-size "
                           f"{cfg.batch_size}")
    steps = min(len(loader), cfg.steps_per_epoch or len(loader))
    total = steps * cfg.epochs
    last_epoch = cfg.epochs if cfg.stop_after is None else min(cfg.epochs, epoch + cfg.stop_after)
    summary: dict = {"epoch": epoch, "step": step}
    if epoch >= cfg.epochs and ctx.rank == 0:
        print(f"nothing to train: {out / CHECKPOINT} is at epoch {epoch} of --epochs {cfg.epochs}", flush=True)
    while epoch < last_epoch:
        t0 = time.time()
        net.train()
        sampler.set_epoch(epoch)
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (cfg.progress and ctx.rank == 0),
                   dynamic_ncols=True, leave=False)
        sums = [0.0, 0.0]
        for i, (x, y) in enumerate(loader):
            if i == steps:
                break
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(cfg.lr, step, total)
            losses = train_step(model, net, optimizer, x.to(ctx.device), y.to(ctx.device),
                                sandwich(space, cfg.seed, step, cfg.n_random), cfg.distill)
            step += 1
            others = sum(losses[1:]) / max(len(losses) - 1, 1)
            sums[0] += losses[0]
            sums[1] += others
            bar.set_postfix(loss=f"{losses[0]:.3f}", kd=f"{others:.3f}")
            bar.update()
        bar.close()
        epoch += 1
        loss, others = ctx.mean(sums)
        summary = {"epoch": epoch, "step": step, "loss": loss / steps, "loss_others": others / steps}
        if ctx.rank == 0:
            if cfg.evaluate:
                summary["acc_largest"] = evaluate(net, space.largest(), data, cfg, ctx.device)
                summary["acc_smallest"] = evaluate(net, space.smallest(), data, cfg, ctx.device)
            summary["seconds"] = round(time.time() - t0, 2)
            _save(out / CHECKPOINT, {"format": FORMAT, "space": space.to_dict(), "classes": data.classes,
                                     "config": _config_dict(cfg), "epoch": epoch, "step": step,
                                     "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                                     "rng": _rng_state(ctx.device)})
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(summary) + "\n")
            print(_epoch_line(summary, cfg.epochs), flush=True)
        ctx.barrier()
    return summary


def _epoch_line(s: dict, epochs: int) -> str:
    line = f"epoch {s['epoch']}/{epochs}: loss {s['loss']:.4f} (largest), {s['loss_others']:.4f} (others)"
    if "acc_largest" in s:
        line += f"; val accuracy after BN recalibration: largest {100 * s['acc_largest']:.1f}%, " \
                f"smallest {100 * s['acc_smallest']:.1f}%"
    return line + f" ({s['seconds']} s)"


def _config_dict(cfg: TrainConfig) -> dict:
    d = asdict(cfg)
    d["out"] = str(cfg.out)
    return d


def _save(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


# ---- command line ------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block) and exit code 2."""

    def error(self, message):
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m tinynas.supernet",
                     description="Weight-sharing supernet of the MCUNet search space (runs unchanged under torchrun).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    t = sub.add_parser("train", help="train a supernet (sandwich rule, in-place distillation)")
    t.add_argument("--data", required=True, help="'digits' (built-in demo) or a folder DIR/<class>/<image>")
    t.add_argument("--out", required=True, type=Path, help="folder for checkpoint.pt, space.json, log.jsonl")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=64, help="global batch (split over torchrun's processes)")
    t.add_argument("--lr", type=float, default=0.05, help="initial learning rate (cosine to 0)")
    t.add_argument("--weight-decay", type=float, default=4e-5)
    t.add_argument("--n-random", type=int, default=2, help="random candidates per step (sandwich rule)")
    t.add_argument("--no-distill", action="store_true", help="train every candidate on the labels")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--steps-per-epoch", type=int, help="at most this many steps per epoch")
    t.add_argument("--stop-after", type=int, metavar="N", help="stop after N epochs of this run (then --resume)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    t.add_argument("--val-fraction", type=float, default=0.2, help="validation split: the search measures on it")
    t.add_argument("--test-fraction", type=float, default=0.2,
                   help="test split held out from training and search (0: none); the deployed network is measured on it")
    t.add_argument("--test-fold", type=int, default=0, help="which --test-fraction slice of each class is the test split")
    t.add_argument("--channels", type=int, help="image channels, 1 or 3 (default: digits 1, folders 3)")
    t.add_argument("--calib-batches", type=int, default=4, help="BN recalibration batches before evaluation")
    t.add_argument("--no-eval", action="store_true", help="skip the per-epoch validation")
    t.add_argument("--device", default="auto", help="auto, cpu or cuda")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    s = t.add_argument_group("search space (default: MCUNet's, width 1.0, resolutions 96-160)")
    s.add_argument("--space", type=Path, help="JSON file of SearchSpace fields")
    s.add_argument("--width-mult", type=float, help="width multiplier (overrides --space)")
    s.add_argument("--resolutions", type=_int_list, help="e.g. 24,28,32 (overrides --space)")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    space = SearchSpace()
    if args.space is not None:
        try:
            space = SearchSpace.from_dict(json.loads(args.space.read_text()))
        except OSError as exc:
            raise TinyNasError(f"--space {args.space}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise TinyNasError(f"--space {args.space}: not JSON ({exc.msg}, line {exc.lineno})") from None
        except TypeError as exc:
            raise TinyNasError(f"--space {args.space}: {exc}") from None
    overrides = {k: v for k, v in (("width_mult", args.width_mult), ("resolutions", args.resolutions)) if v is not None}
    space = replace(space, **overrides)
    return TrainConfig(data=args.data, out=args.out, space=space, epochs=args.epochs, batch_size=args.batch_size,
                       lr=args.lr, weight_decay=args.weight_decay, n_random=args.n_random,
                       distill=not args.no_distill, seed=args.seed, steps_per_epoch=args.steps_per_epoch,
                       stop_after=args.stop_after, resume=args.resume, val_fraction=args.val_fraction,
                       test_fraction=args.test_fraction, test_fold=args.test_fold,
                       channels=args.channels, calib_batches=args.calib_batches, evaluate=not args.no_eval,
                       device=args.device, progress=not args.no_progress)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        train(config_from_args(args))
    except TinyNasError as exc:
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
