"""What a candidate costs on a board, from tinyengine itself: `CostModel.get_efficiency(candidate)`.

- Peak SRAM, exactly as tinyengine's report.json states it before a run: `te.plan_memory` of the
  lowered graph (`tinynas.lower`) with the compiler's default techniques (in-place, overlap, fusion,
  packed tables, optional scratch) and, with `patch=True`, the patch schedule `--patch auto` picks
  where layer by layer misses the SRAM budget, plus the board's stack allowance
  (`te.get_board(b).stack_bytes`): report.json's `peak_sram_bytes = arena_bytes + stack_bytes`.
  (`CostModel` says which schedule; `CostModel.options(eff)` compiles with it.)
- Flash: the constant data the planned graph stores (weights as the kernels store them, biases in
  their accumulator tables, per-channel tables packed or not), counted from the nodes' params
  without generating C, plus the code: a per-board model `code = base + per_layer x layers`, fitted
  on real builds by `python -m tinynas.fit_cost` into `cost_fit.json`.
- Instructions: per layer a non-negative combination of MACs, output and input elements, output channels,
  output rows, weights and 1 (`layer_features`; a fused expand also its depthwise partner's MACs,
  `fitted_layers`), the coefficients fitted per kernel (`node.params['kernel']`; fused pairs, patch
  stages and a granted optional scratch apart) on QEMU `profile` counts of built candidates (same
  script). A kernel the fit never saw uses the fit of its op (its kernels' layers that run alone);
  `Efficiency.instructions_from_op_fit` counts such layers. The kernels are those of typical
  quantization (`tinynas.lower`); trained weights keep them once their constant channels are settled
  (`SubNet.settle_constant_channels`, which the deployment does).

Speed (`python bench/nas_speed.py` measures it): results are cached per candidate, and `evaluate`
spreads candidates over processes. Per candidate, tinyengine's passes prepare each layer's kernel
parameters (multipliers, packed weights, constant channels): `lower` draws each layer from its own
seeded stream, so a layer recurs unchanged across candidates, and the model keeps the prepared
params of every layer it has seen (`CostModel.prepared`, `te.run_passes(prepared=...)`). tinyengine's memory plan tries its grants by replaying its sweeps
(`tinyengine.planner.Replanner`) rather than planning again.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tinyengine as te

from .errors import TinyNasError
from .lower import lower
from .space import Candidate, SearchSpace

FIT_PATH = Path(__file__).with_name("cost_fit.json")

# params that hold constant tables in Flash when the weights / biases are folded into them
_TABLE_PARAMS = ("acc_init", "out_mult", "out_shift", "rq_mult", "rq_shift", "bias")


@dataclass(frozen=True)
class Efficiency:
    """A candidate's figures on one board (bytes, instructions)."""
    peak_sram_bytes: int
    arena_bytes: int
    flash_bytes: int
    const_bytes: int
    instructions: int
    macs: int
    patch: str | None                 # the patch schedule (spec) the plan uses, None layer by layer
    instructions_from_op_fit: int = 0  # layers whose kernel the fit never saw

    def to_dict(self) -> dict:
        return asdict(self)


def board_of(name: str):
    """The tinyengine board, or TinyNasError naming the supported ones."""
    try:
        return te.get_board(name)
    except te.TinyEngineError as exc:
        raise TinyNasError(f"board: {exc}") from None


def load_fit(board: str, path: Path = FIT_PATH) -> dict:
    try:
        fits = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TinyNasError(f"cost fit {path}: unreadable ({exc}); regenerate it with python -m tinynas.fit_cost") \
            from None
    if board not in fits:
        raise TinyNasError(f"cost fit {path}: no fit for board {board} (fitted: {', '.join(sorted(fits))}); "
                           f"run python -m tinynas.fit_cost --board {board}")
    return fits[board]


def const_bytes(graph) -> int:
    """Flash bytes of a planned graph's constants, from its nodes' params (codegen stores these)."""
    total = 0
    for node in graph.nodes:
        p = node.params
        for name in node.inputs[1:]:
            t = graph.tensors.get(name) if name is not None else None
            if t is None or not t.is_const or t.dtype == "int32":    # int32 biases live in the tables
                continue
            total += p["w_packed"].nbytes if (t.dtype == "int8" and "w_packed" in p) else t.nbytes
        if "rq_packed" in p:
            total += p["rq_packed"].nbytes
        elif "rq_table_bytes" in p:
            total += int(p["rq_table_bytes"])
        else:
            total += sum(v.nbytes for k, v in p.items() if k in _TABLE_PARAMS and isinstance(v, np.ndarray))
    return total


def layer_keys(graph, plan) -> list[str]:
    """Per layer, the instruction fit's key: its kernel, marked when fused or in a patch stage, and
    `+scratch` where the plan granted the kernel's optional scratch (the depthwise DSP kernel then widens
    its weights once and runs other pixel loops)."""
    fused = {k for f in plan.fusions for k in (f.expand, f.dw)}
    stage = plan.patch.split if plan.patch is not None else -1
    keys = []
    for i, node in enumerate(graph.nodes):
        p = node.params
        kernel = p.get("kernel", node.op)
        scratch = "+scratch" if p.get("optional_scratch_bytes", 0) and p.get("scratch_bytes", 0) else ""
        keys.append(("patch:" if i <= stage else "fused:" if i in fused else "") + kernel + scratch)
    return keys


def fitted_layers(graph, plan) -> list[tuple[str, list[float]]]:
    """Per layer, its fit key (`layer_keys`) and the features its instructions are fitted on: its own
    (`layer_features`) and 0; a fused expand, which runs the pair's work in one loop (the depthwise layer
    itself costs a few instructions), on its MACs and its depthwise partner's MACs alone (the other
    features 0): the fit sees about one fused pair per candidate, too few for more (a 7x7 depthwise fused
    on stm32f411 measured +59% against a fit on the expand's MACs alone)."""
    dw_of = {f.expand: f.dw for f in plan.fusions}
    out = []
    for i, (key, node) in enumerate(zip(layer_keys(graph, plan), graph.nodes)):
        own = layer_features(graph, node)
        if i in dw_of:
            out.append((key, [own[0]] + [0.0] * (len(own) - 1) + [float(_macs(graph, graph.nodes[dw_of[i]]))]))
        else:
            out.append((key, own + [0.0]))
    return out


def layer_features(graph, node) -> list[float]:
    """What a layer's instructions are fitted on: the MACs it computes (window taps inside the input only:
    the kernels skip the padding, which on small maps is most of a large kernel's window), output
    elements, input elements, output channels (per-channel work: requantization set-up, weight rows),
    output rows (per-row loop set-up), the MACs of an odd last pixel (the DSP kernels compute two pixels
    at a time, a last one alone at about twice the cost per MAC), the weights (work once per weight
    whatever the map: the depthwise DSP kernel widens all its weights into scratch first, which on a 1 x 1
    or 2 x 2 map, where most taps are padding, costs as much as the MACs), 1."""
    out = graph.tensors[node.outputs[0]]
    inp = graph.tensors[node.inputs[0]]
    rows = out.shape[1] if len(out.shape) == 4 else 1
    pixels = out.size // out.shape[-1]
    macs = _macs(graph, node)
    weights = graph.tensors[node.inputs[1]].size if macs else 0
    return [float(macs), float(out.size), float(inp.size), float(out.shape[-1]), float(rows),
            float(macs // pixels if pixels % 2 else 0), float(weights), 1.0]


def _taps(size: int, out: int, k: int, stride: int, pad: int, dil: int) -> int:
    """Over the `out` windows of one axis, the kernel taps that land inside the input."""
    return sum(sum(0 <= o * stride - pad + t * dil < size for t in range(k)) for o in range(out))


def _macs(graph, node) -> int:
    if node.op not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        return 0
    w = graph.tensors[node.inputs[1]]
    out = graph.tensors[node.outputs[0]]
    p = node.params
    if node.op == "FULLY_CONNECTED" or "k_h" not in p:
        per_out = w.shape[1] * w.shape[2] if node.op == "DEPTHWISE_CONV_2D" else w.size // w.shape[0]
        return out.size * per_out
    taps = (_taps(p["in_h"], p["out_h"], p["k_h"], p["stride_h"], p["pad_top"], p["dil_h"])
            * _taps(p["in_w"], p["out_w"], p["k_w"], p["stride_w"], p["pad_left"], p["dil_w"]))
    per_tap = out.shape[-1] if node.op == "DEPTHWISE_CONV_2D" else out.shape[-1] * w.shape[-1]
    return out.shape[0] * taps * per_tap


class CostModel:
    """get_efficiency(candidate) for one space and board (the search's efficiency predictor).

    patch: the plan may use a patch-based first stage. Layer by layer first; where that misses
    `sram_budget` (peak SRAM bytes, as the report counts them) or no budget is given, the schedule
    `--patch auto` picks, if its arena is smaller than layer by layer's. The chosen schedule is `Efficiency.patch`, and
    `options(eff)` are the compile options that reproduce the prediction (`--patch RxC@LAYER`).
    """

    def __init__(self, space: SearchSpace, board: str, patch: bool = False, sram_budget: int | None = None,
                 fit: dict | None = None, seed: int = 0):
        self.space = space
        self.board = board_of(board)
        self.patch = bool(patch)
        self.sram_budget = sram_budget
        self.fit = fit if fit is not None else load_fit(self.board.name)
        self.seed = seed
        self._cache: dict = {}
        self._layers: dict = {}      # tinyengine.passes.node_key -> prepared params
        self._pool = None            # (processes, multiprocessing pool, finalizer) of evaluate

    def options(self, eff: Efficiency | None = None) -> te.CompileOptions:
        """The compile options whose report equals the prediction `eff` (without one: layer by layer)."""
        return te.CompileOptions(board=self.board.name, patch=eff.patch if eff is not None else None)

    def prepared(self, c: Candidate):
        """The lowered candidate after `te.run_passes`, as `te.compile_graph` runs them; the nodes'
        prepared params found again in the model's layer cache where a candidate seen before had the
        same layer (`tinyengine.passes.node_key`). A new graph every call (`te.plan_memory` writes
        into its nodes' params)."""
        graph = te.set_target(lower(self.space, c, seed=self.seed), self.board)
        return te.run_passes(graph, te.CompileOptions(board=self.board.name), prepared=self._layers)

    def plan(self, c: Candidate):
        """(graph, plan) of the candidate as `te.compile_graph` plans it (see the class docstring)."""
        plain = te.CompileOptions(board=self.board.name)
        graph = self.prepared(c)
        plan = te.plan_memory(graph, plain.plan_options())
        if not self.patch or (self.sram_budget is not None
                              and plan.arena_bytes + self.board.stack_bytes <= self.sram_budget):
            return graph, plan
        patched = te.CompileOptions(board=self.board.name, patch="auto")
        pgraph = self.prepared(c)
        pplan = te.plan_memory(pgraph, patched.plan_options())
        # auto compares arenas before fusion: after it, layer by layer can still be the smaller
        return (pgraph, pplan) if pplan.arena_bytes < plan.arena_bytes else (graph, plan)

    def get_efficiency(self, c: Candidate) -> Efficiency:
        hit = self._cache.get(c)
        if hit is None:
            hit = self._cache[c] = self._evaluate(c)
        return hit

    def _evaluate(self, c: Candidate) -> Efficiency:
        graph, plan = self.plan(c)
        consts = const_bytes(graph)
        code = self.fit["code"]
        flash = consts + code["base"] + code["per_layer"] * len(graph.nodes)
        instructions, from_op = self.instructions(graph, plan)
        return Efficiency(int(plan.arena_bytes + self.board.stack_bytes), int(plan.arena_bytes),
                          int(round(flash)), int(consts), instructions, self.space.macs(c),
                          plan.patch.spec() if plan.patch is not None else None, from_op)

    def instructions(self, graph, plan) -> tuple[int, int]:
        coef, by_op = self.fit["instructions"], self.fit["instructions_by_op"]
        total, from_op = self.fit.get("instructions_base", 0.0), 0
        for node, (key, features) in zip(graph.nodes, fitted_layers(graph, plan)):
            w = coef.get(key)
            if w is None:
                if node.op not in by_op:
                    raise TinyNasError(f"cost fit: no instruction fit for op {node.op} (kernel {key}); "
                                       "refit with python -m tinynas.fit_cost")
                w, from_op = by_op[node.op], from_op + 1
            total += float(np.dot(w, features))
        return int(round(total)), from_op

    def evaluate(self, cands: list[Candidate], processes: int | None = None) -> list[Efficiency]:
        """get_efficiency of each candidate, the uncached ones spread over `processes` (default: all cores).
        The worker processes stay (and keep their layer caches) from one call to the next until `close()`
        or another number of processes is asked."""
        todo = list(dict.fromkeys(c for c in cands if c not in self._cache))
        processes = processes or os.cpu_count() or 1
        if len(todo) > 1 and processes > 1:
            for c, eff in zip(todo, self._workers(processes).map(_evaluate_in_worker, todo, chunksize=1)):
                self._cache[c] = eff
        else:
            for c in todo:
                self.get_efficiency(c)
        return [self._cache[c] for c in cands]

    def _workers(self, processes: int):
        if self._pool is None or self._pool[0] != processes:
            self.close()
            global _WORKER
            if "fork" in multiprocessing.get_all_start_methods():
                _WORKER = self            # what the forked workers inherit (the pool holds no reference
                try:                      # to the model, so that dropping the model stops them)
                    pool = multiprocessing.get_context("fork").Pool(processes)
                finally:
                    _WORKER = None
            else:
                pool = multiprocessing.get_context("spawn").Pool(processes, initializer=_init_worker,
                                                                 initargs=(self,))
            self._pool = (processes, pool, weakref.finalize(self, pool.terminate))
        return self._pool[1]

    def close(self) -> None:
        """Stop the worker processes (`evaluate` starts them again where needed)."""
        if self._pool is not None:
            self._pool[2]()
            self._pool = None

    def __getstate__(self):       # workers get the model without caches or workers
        state = dict(self.__dict__)
        state.update(_cache={}, _layers={}, _pool=None)
        return state


_WORKER: CostModel | None = None      # in a worker process of CostModel.evaluate: its model


def _init_worker(model: CostModel) -> None:      # a spawned worker: the model comes pickled
    global _WORKER
    _WORKER = model


def _evaluate_in_worker(c: Candidate) -> Efficiency:
    return _WORKER._evaluate(c)
