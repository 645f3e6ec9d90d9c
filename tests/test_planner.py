"""The memory planner: no two live buffers overlap, greedy beats linear, and it is fast."""
import time

import numpy as np
import pytest

from tinyengine.compiler import CompileOptions, load_model, run_passes, set_target
from tinyengine.memory import plan_memory
from tinyengine.planner import GreedyPlanner, LinearPlanner, Replanner, plan_graph
from tinyengine.ir import Graph, Node, Tensor, QuantParams


def _check_no_overlap(buffers, offsets):
    for i, a in enumerate(buffers):
        for b in buffers[i + 1:]:
            if a.first <= b.last and b.first <= a.last:  # alive together
                oa, ob = offsets[a.name], offsets[b.name]
                assert oa + a.size <= ob or ob + b.size <= oa, (a, b, oa, ob)


def test_greedy_never_overlaps_live_buffers_and_beats_linear():
    rng = np.random.default_rng(0)
    for _ in range(20):
        g, lin = GreedyPlanner(), LinearPlanner()
        for i in range(60):
            first = int(rng.integers(0, 50))
            last = first + int(rng.integers(0, 6))
            size = int(rng.integers(1, 5000))
            g.add_buffer(f"b{i}", size, first, last)
            lin.add_buffer(f"b{i}", size, first, last)
        offsets, arena = g.plan()
        _check_no_overlap(g.buffers, offsets)
        assert all(offsets[b.name] + b.size <= arena for b in g.buffers)
        assert arena <= lin.plan()[1]
        # lower bound: the largest set of simultaneously live bytes
        live_max = max(sum(b.size for b in g.buffers if b.first <= t <= b.last) for t in range(56))
        assert arena >= live_max


def _chain_graph(n_ops: int) -> Graph:
    q = QuantParams([0.1], [0])
    tensors = {"t0": Tensor("t0", (1, 16, 16, 8), "int8", q)}
    nodes = []
    for i in range(n_ops):
        src = f"t{i}"
        other = f"t{max(i - 3, 0)}"  # residual-like long edges
        tensors[f"t{i + 1}"] = Tensor(f"t{i + 1}", (1, 16, 16, 8 + (i % 5)), "int8", q)
        nodes.append(Node("ADD" if i % 2 else "LOGISTIC", f"n{i}", [src, other] if i % 2 else [src],
                          [f"t{i + 1}"]))
    return Graph(tensors, nodes, ["t0"], [f"t{n_ops}"])


def test_planning_a_100_op_graph_takes_well_under_50ms():
    graph = _chain_graph(100)
    plan_graph(graph)  # warm up imports / op registry
    t0 = time.perf_counter()
    for _ in range(10):
        plan = plan_graph(graph)
    per_plan = (time.perf_counter() - t0) / 10
    assert per_plan < 0.025, f"{per_plan * 1e3:.1f} ms per plan"
    assert plan.arena_bytes >= 2 * 16 * 16 * 8


def test_plan_keeps_live_tensors_apart():
    graph = _chain_graph(30)
    plan = plan_graph(graph, "greedy")
    spans = {name: (lo, hi, size) for name, (lo, hi, size) in plan.lifetimes.items()}
    names = list(spans)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            la, ha, sa = spans[a]
            lb, hb, sb = spans[b]
            if la <= hb and lb <= ha:
                oa, ob = plan.offsets.get(a, None), plan.offsets.get(b, None)
                assert oa + sa <= ob or ob + sb <= oa


@pytest.mark.parametrize("model,options", [
    ("mcunet/mcunet-vww1.tflite", {}),                       # fused pairs, overlaps (8 sweeps)
    ("mcunet/mcunet-vww1.tflite", {"patch": "auto"}),        # a patch stage's tables
    ("mlperf_tiny/vww_96_int8.tflite", {"planner": "linear"}),
    ("mlperf_tiny/kws_ref_model.tflite", {"overlap": False}),  # one sweep
])
def test_replanner_gives_plan_graphs_arena_after_every_grant(models_dir, monkeypatch, model, options):
    """memory.plan_memory tries its grants with planner.Replanner (replayed sweeps, no replanning):
    at every try, the arena it finds is the one plan_graph gives the graph as it then is, the
    grant is kept exactly where that does not exceed the arena so far, and the final plan is
    plan_graph's."""
    tries = []
    try_node = Replanner.try_node

    def checked(self, i):
        before = self.arena_bytes
        full = plan_graph(*self.args).arena_bytes
        kept = try_node(self, i)
        assert kept == (full <= before), (i, full, before)
        assert self.arena_bytes == (full if kept else before)
        tries.append(kept)
        return kept

    monkeypatch.setattr(Replanner, "try_node", checked)
    opts = CompileOptions(board="stm32f746", **options)
    graph = run_passes(set_target(load_model(models_dir / model), opts.board), opts)
    plan = plan_memory(graph, opts.plan_options())
    assert len(tries) >= 5
    assert any(tries) == (opts.planner != "linear")      # without reuse every grant costs bytes
    assert plan.arena_bytes == plan_graph(graph, opts.planner, overlap=opts.overlap, patch=plan.patch,
                                          fusions=plan.fusions).arena_bytes
