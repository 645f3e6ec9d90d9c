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

from .graph import TrainingGraph


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
    b = te.get_board(board)
    p = te.plan_memory(tg.graph, te.PlanOptions(patch=None))
    return TrainPlan(b.name, p.arena_bytes, tg.param_bytes(), tg.state_bytes(), b.stack_bytes,
                     b.sram_bytes)


def check_fits(p: TrainPlan, what: str = "the training graph") -> None:
    if not p.fits:
        raise te.FitError(f"{what} needs {p.breakdown()} of SRAM; {p.board} has {p.sram_bytes}")
