"""The training firmware's memory: one static arena planned by tinyengine's planner, plus the
state that lives beside it.

peak SRAM = arena (forward activations, the saved ones alive until the backward reads them,
1-bit masks, gradients, scratch: te.plan_memory on the training graph)
          + trained parameters (the int8 weights and int32 biases of trained layers, whole
            tensors, copied from Flash to SRAM at start; frozen ones stay in Flash)
          + optimizer state (momentum buffers)
          + stack (the board's).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import tinyengine as te

from .graph import TrainGraphError, TrainingGraph, build
from .scheme import Scheme, trainable_layers


@dataclass(frozen=True)
class TrainPlan:
    board: str
    arena_bytes: int
    param_bytes: int
    state_bytes: int
    stack_bytes: int
    sram_bytes: int              # the board's (0: no limit, the host)

    @property
    def peak_sram_bytes(self) -> int:
        return self.arena_bytes + self.param_bytes + self.state_bytes + self.stack_bytes

    @property
    def fits(self) -> bool:
        return not self.sram_bytes or self.peak_sram_bytes <= self.sram_bytes

    def as_dict(self) -> dict:
        return {**asdict(self), "peak_sram_bytes": self.peak_sram_bytes}

    def breakdown(self) -> str:
        return (f"{self.peak_sram_bytes} bytes (arena {self.arena_bytes} + trained parameters "
                f"{self.param_bytes} + optimizer state {self.state_bytes} + stack "
                f"{self.stack_bytes})")


def plan(tg: TrainingGraph, board: str) -> TrainPlan:
    """The memory plan of a training graph on a board (no patch stage: the backward reads the
    forward's whole tensors)."""
    return plan_arena(tg, board)[0]


def plan_arena(tg: TrainingGraph, board: str) -> tuple:
    """(TrainPlan, the arena's te.MemoryPlan): the plan the firmware is generated from
    (te.plan_memory writes the nodes' params: plan a training graph once)."""
    b = te.get_board(board)
    p = te.plan_memory(tg.graph, te.PlanOptions(patch=None))
    return TrainPlan(b.name, p.arena_bytes, tg.param_bytes(), tg.state_bytes(), b.stack_bytes,
                     b.sram_bytes), p


def check_fits(p: TrainPlan, what: str = "the training graph") -> None:
    if not p.fits:
        raise te.FitError(f"{what} needs {p.breakdown()} of SRAM; {p.board} has {p.sram_bytes}")


DEFAULT_BUDGET = 256 * 1024      # the paper's figure: the default scheme's most peak SRAM
DEFAULT_WEIGHT_RATIOS = (0.5, 0.25)


def default_scheme(fwd, board: str, **optimizer) -> Scheme:
    """A sparse scheme in the spirit of "On-Device Training Under 256KB Memory" that fits the
    board: the weights of the last two 1x1 CONV_2D layers before the head (half, then a quarter
    of their output channels) and the biases of as many of the last layers as fit in
    DEFAULT_BUDGET or the board's SRAM where that is less (room is left for the firmware's
    other statics), found by bisection over K (the plan grows with K).  Without the weights
    where they do not fit; the head alone where nothing more fits.  A scheme reaching below an
    op without a gradient rule counts as one that does not fit."""
    b = te.get_board(board)
    budget = min(b.sram_bytes or DEFAULT_BUDGET, DEFAULT_BUDGET)
    layers = trainable_layers(fwd)[:-1]
    pointwise = [lay for lay in layers if lay.op == "CONV_2D"
                 and fwd.tensors[lay.weights].shape[1:3] == (1, 1)][-len(DEFAULT_WEIGHT_RATIOS):]
    weights = tuple((lay.name, r) for lay, r in zip(reversed(pointwise), DEFAULT_WEIGHT_RATIOS))

    def fits(k, w):
        s = Scheme(bias_last=k, weights=w, source="default scheme")
        try:
            p = plan(build(fwd, s, **optimizer), board)
        except TrainGraphError:       # reaches below an op without a gradient rule
            return False
        return p.peak_sram_bytes <= budget

    for w in (weights, ()):
        lo, hi = 0, len(layers) + 1                      # bias_last counts the head
        if not fits(lo, w):
            continue
        while lo < hi:                                   # the largest K that fits
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid, w) else (lo, mid - 1)
        return Scheme(bias_last=lo, weights=w, source="default scheme")
    return Scheme(source="default scheme")
