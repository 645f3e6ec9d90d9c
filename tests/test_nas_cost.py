"""tinynas.cost: peak SRAM predicted exactly as tinyengine's report states it (layer by layer and with
patches, two boards, different budgets), Flash within 3% and instructions within 10% of QEMU's
measurements on candidates the fit never saw (MobileNetV2 w0.25 r32 among them, also as the deployment
exports it from trained weights), and one-line errors."""
import random

import numpy as np
import pytest

import tinyengine as te
from bench_scripts import load as load_bench
from tinynas.cost import CostModel, layer_keys, load_fit
from tinynas.errors import TinyNasError
from tinynas.fit_cost import FIT_SPACE
from tinynas.lower import lower
from tinynas.space import Candidate, SearchSpace

SMALL = SearchSpace(width_mult=0.35, resolutions=(48, 64, 80))
# bench/nas.py's MobileNetV2 baseline for a 16 KB board: an 8-channel stem and first block on grey 32 x 32
MBV2 = load_bench("nas").mobilenet_v2(0.25, 32, SearchSpace(in_channels=1, num_classes=10))


def _compiled_report(model: CostModel, c, out):
    compiled = te.compile_graph(lower(model.space, c, seed=model.seed), model.options(model.get_efficiency(c)))
    return compiled, te.write_project(compiled, out)


@pytest.mark.parametrize("board,patch,limit", [("stm32f746", False, None), ("stm32f411", False, None),
                                               ("stm32f746", True, 32_000), ("stm32f411", True, 22_000)])
def test_peak_sram_is_the_reports_exactly(tmp_path, board, patch, limit):
    model = CostModel(SMALL, board, patch=patch, sram_budget=limit)
    rng = random.Random(7 if patch else 3)
    seen_patch = []
    for i in range(2):
        c = SMALL.sample(rng)
        eff = model.get_efficiency(c)
        compiled, report = _compiled_report(model, c, tmp_path / str(i))
        assert eff.peak_sram_bytes == report["peak_sram_bytes"]
        assert eff.arena_bytes == report["arena_bytes"]
        assert eff.macs == report["macs"]
        assert eff.patch == (compiled.plan.patch.spec() if compiled.plan.patch is not None else None)
        assert abs(eff.const_bytes - report["const_bytes"]) <= 0.01 * report["const_bytes"]
        plain = CostModel(SMALL, board).get_efficiency(c)
        if eff.patch is not None:      # patches only where layer by layer misses the budget, and smaller
            assert patch and plain.peak_sram_bytes > limit and eff.peak_sram_bytes < plain.peak_sram_bytes
            seen_patch.append(eff.patch)
        else:
            assert eff == plain
    if patch:
        assert seen_patch, "the budget was meant to need patches for these candidates"


def test_cache_and_processes_give_the_same_figures():
    model = CostModel(SMALL, "stm32f746")
    rng = random.Random(5)
    cands = [SMALL.sample(rng) for _ in range(3)]
    spread = model.evaluate(cands + cands[:1], processes=2)
    serial = CostModel(SMALL, "stm32f746")
    assert spread == [serial.get_efficiency(c) for c in cands + cands[:1]]
    assert model.get_efficiency(cands[0]) is spread[0]          # cached
    workers = model._pool[1]                                      # kept for the next call
    more = [SMALL.sample(rng) for _ in range(2)]
    assert model.evaluate(more, processes=2) == [serial.get_efficiency(c) for c in more]
    assert model._pool[1] is workers
    model.close()
    assert model._pool is None


def test_errors_are_one_line():
    with pytest.raises(TinyNasError, match="board: .*stm32f999") as exc:
        CostModel(SMALL, "stm32f999")
    assert "\n" not in str(exc.value)
    with pytest.raises(TinyNasError, match="no fit for board host"):
        load_fit("host")


@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize("board", ["stm32f746", "stm32f411"])
def test_flash_and_instructions_within_bounds_of_qemu(tmp_path, board):
    """Candidates the fit did not see (other seeds; one with patches; MobileNetV2 w0.25 r32): peak SRAM
    exactly the compile's report, Flash within 3%, instructions within 10% of the built firmware's; the
    QEMU-measured peak SRAM (static SRAM + the stack used) stays within the prediction (which reserves the
    board's whole stack allowance)."""
    fit = load_fit(board)
    fitted = {(SearchSpace.from_dict(fit["spaces"][s["space"]]), Candidate.from_dict(s["candidate"]))
              for s in fit["samples"]}
    rng = random.Random(101)
    cases = [(FIT_SPACE, FIT_SPACE.sample(rng), False), (FIT_SPACE, FIT_SPACE.sample(rng), True),
             (MBV2, MBV2.largest(), False)]
    for i, (space, c, patch) in enumerate(cases):
        assert (space, c) not in fitted
        model = CostModel(space, board, patch=patch)
        eff = model.get_efficiency(c)
        compiled, report = _compiled_report(model, c, tmp_path / str(i))
        assert eff.peak_sram_bytes == report["peak_sram_bytes"]
        result = te.build_and_run(compiled, tmp_path / str(i), te.random_records(compiled.graph, 1, seed=0))
        assert (eff.patch is not None) == patch
        assert abs(eff.flash_bytes - compiled.report["flash_bytes"]) <= 0.03 * compiled.report["flash_bytes"]
        assert abs(eff.instructions - result.instructions) <= 0.10 * result.instructions
        assert compiled.report["peak_sram_bytes"] <= eff.peak_sram_bytes


def _mbv2_with_a_dead_channel():
    """MobileNetV2 w0.25 r32 as deploy exports it from trained weights where a stem channel never fires:
    its depthwise channel in the first block computes a constant, and training decays that channel's
    running variance to about 0 (0.9 ** 110 after bench/nas.py's 5 epochs of 22 steps), so that batch
    norm folded into the depthwise weights multiplies them by about 300. (The subnet, calibration images.)"""
    torch = pytest.importorskip("torch")
    from tinynas.supernet import SuperNet
    torch.manual_seed(0)
    subnet = SuperNet(MBV2).get_active_subnet(MBV2.largest()).eval()
    with torch.no_grad():
        subnet.stem[1].bias[3] = -100.0                   # ReLU6 gives 0 for every image
        subnet.blocks[0].depthwise[1].running_var[3] = 0.9 ** 110
    x = torch.rand(16, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return subnet, x


def _compile_exported(subnet, x, board, out):
    from tinynas.pipeline import compile_onnx, export_onnx
    return compile_onnx(export_onnx(subnet, out / "model.onnx"), x.numpy(), te.CompileOptions(board=board))


def test_settled_constant_channels_keep_the_predicted_kernels(tmp_path):
    """Trained weights must not send a layer to another kernel than the cost model predicts: a dead channel
    left as it is gives the first depthwise layer a requantization multiplier above 0.25, hence the
    portable kernel (8 times slower: +32% instructions for the whole network); settled
    (SubNet.settle_constant_channels), the exported model has the predicted kernel on every layer and
    computes the same on the images."""
    torch = pytest.importorskip("torch")
    subnet, x = _mbv2_with_a_dead_channel()
    predicted = [k.split(":")[-1].split("+")[0] for k in layer_keys(*CostModel(MBV2, "stm32f746").plan(MBV2.largest()))]
    tmp_path.joinpath("raw").mkdir()
    raw = _compile_exported(subnet, x, "stm32f746", tmp_path / "raw")
    kernels = [n.params.get("kernel", n.op) for n in raw.graph.nodes]
    assert kernels[1] == "te_depthwise_conv_2d_s8" != predicted[1]        # the case itself
    with torch.no_grad():
        before = subnet(x)
        assert subnet.settle_constant_channels(x) >= 1
        assert torch.equal(subnet(x), before)
        assert float(subnet.blocks[0].depthwise[1].weight[3]) == 0.0
    settled = _compile_exported(subnet, x, "stm32f746", tmp_path)
    kernels = [n.params.get("kernel", n.op) for n in settled.graph.nodes]
    # the head's classifier is quantized per channel from ONNX (per tensor in tinynas.lower)
    assert kernels[:-1] == predicted[:-1]


@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize("board", ["stm32f746", "stm32f411"])
def test_deployed_mobilenet_v2_with_a_dead_channel_within_bounds_of_qemu(tmp_path, board):
    """bench/nas.py's case (it measured +32% instructions): MobileNetV2 w0.25 r32 with a dead channel,
    settled and exported as deploy does, quantized with calibration images, built and run: peak SRAM
    exactly, Flash within 3% and instructions within 10% of the prediction."""
    subnet, x = _mbv2_with_a_dead_channel()
    subnet.settle_constant_channels(x)
    model = CostModel(MBV2, board)
    eff = model.get_efficiency(MBV2.largest())
    compiled = _compile_exported(subnet, x, board, tmp_path)
    report = te.write_project(compiled, tmp_path / "project")
    assert eff.peak_sram_bytes == report["peak_sram_bytes"]             # the compile's (the run adds its own)
    result = te.build_and_run(compiled, tmp_path / "project", [[x[:1].numpy()]])
    assert abs(eff.flash_bytes - compiled.report["flash_bytes"]) <= 0.03 * compiled.report["flash_bytes"]
    assert abs(eff.instructions - result.instructions) <= 0.10 * result.instructions


def _params_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        np.array_equal(a[k], b[k]) if isinstance(a[k], np.ndarray) else a[k] == b[k] for k in a)


def test_layer_cache_gives_what_the_passes_give():
    """Candidates sharing layers: the cost model prepares each layer once (its layer cache), and the
    graphs it plans have exactly the params te.run_passes gives, hence the same figures."""
    model = CostModel(SMALL, "stm32f746")
    rng = random.Random(11)
    first = SMALL.sample(rng)
    model.get_efficiency(first)
    seen = len(model._layers)
    for _ in range(3):
        c = SMALL.mutate(first, rng, prob=0.2)
        graph = model.prepared(c)
        fresh = te.run_passes(te.set_target(lower(SMALL, c, seed=model.seed), model.board),
                              te.CompileOptions(board=model.board.name))
        assert [n.name for n in graph.nodes] == [n.name for n in fresh.nodes]
        assert all(_params_equal(a.params, b.params) for a, b in zip(graph.nodes, fresh.nodes))
        assert model.get_efficiency(c) == CostModel(SMALL, "stm32f746").get_efficiency(c)
    # mutants share most layers: far fewer new entries than layers planned
    assert len(model._layers) - seen < 3 * len(graph.nodes) // 2


@pytest.mark.parametrize("patch", [False, True])
def test_plans_per_candidate_stay_few(monkeypatch, patch):
    """The cost model's speed rests on how few full memory plans a candidate takes: tinyengine's grants
    (packed tables, optional scratch: dozens per network) go through planner.Replanner, not plan_graph.
    Counted, not timed: per plan_memory call one plan for the schedule, one with every useful fusion
    and one per fusion dropped, one final plan; with --patch (layer by layer first, then the patch
    schedule of `--patch auto`) also one per patch schedule tried."""
    from tinyengine import fusion, patching, planner
    calls = {"plan_graph": 0, "try_node": 0, "schedules": 0, "pairs": 0}

    def counting(name, f, count=lambda result: 1):
        def wrapped(*a, **k):
            result = f(*a, **k)
            calls[name] += count(result)
            return result
        return wrapped

    monkeypatch.setattr(planner, "plan_graph", counting("plan_graph", planner.plan_graph))
    monkeypatch.setattr(planner.Replanner, "try_node", counting("try_node", planner.Replanner.try_node))
    monkeypatch.setattr(patching, "candidates", counting("schedules", patching.candidates, len))
    monkeypatch.setattr(fusion, "build", counting("pairs", fusion.build))
    space = SearchSpace()
    model = CostModel(space, "stm32f746", patch=patch)
    c = space.sample(random.Random(2))
    eff = model.get_efficiency(c)
    assert (eff.patch is not None) == patch
    assert calls["try_node"] >= 40                       # every grant tried, without a plan
    plan_memory_calls = 2 if patch else 1
    assert calls["plan_graph"] <= plan_memory_calls * 3 + calls["pairs"] + calls["schedules"], calls
