"""The public API (tinyengine/__init__.py, docs/API.md) serves its users: the pipeline step by
step gives what compile_model gives, and a graph built in memory (tinynas' candidates) plans,
compiles and runs bit-exact with TensorFlow Lite Micro without a model file of its own."""
from __future__ import annotations

import numpy as np

import tinyengine as te
from tests.golden import run_tflm_many
from tests.tflite_builder import ModelBuilder


def _f32(x):
    return np.asarray(x, np.float32).astype(np.float64)


def _layers(width: int, res: int) -> list:
    """A candidate network: three 3x3 convs (int8, per-channel weights), as plain arrays."""
    rng = np.random.default_rng(width * 1000 + res)
    layers, c_in, scale = [], 3, 0.05
    for c_out, stride in [(width, 1), (2 * width, 2), (2 * width, 2)]:
        ws = _f32(rng.uniform(0.005, 0.02, c_out))
        out_s = float(_f32(scale * float(np.mean(ws)) * 60.0 * np.sqrt(9 * c_in)))
        layers.append(dict(w=rng.integers(-127, 128, (c_out, 3, 3, c_in)).astype(np.int8), ws=ws,
                           b=rng.integers(-3000, 3000, c_out).astype(np.int32),
                           bs=_f32(scale * ws), stride=stride, in_s=scale, out_s=out_s,
                           zp=int(rng.integers(-20, 20))))
        c_in, scale = c_out, out_s
    return layers


def _ir_graph(width: int, res: int) -> te.Graph:
    """The candidate built directly in the IR (no model file): what tinynas does."""
    q = te.QuantParams
    tensors = {"x": te.Tensor("x", (1, res, res, 3), "int8", q(_f32(0.05), -3))}
    nodes, prev = [], "x"
    for i, L in enumerate(_layers(width, res)):
        c_out = len(L["ws"])
        zeros = np.zeros(c_out, np.int64)
        tensors[f"w{i}"] = te.Tensor(f"w{i}", L["w"].shape, "int8", q(L["ws"], zeros, 0), L["w"])
        tensors[f"b{i}"] = te.Tensor(f"b{i}", L["b"].shape, "int32", q(L["bs"], zeros, 0), L["b"])
        res = (res + L["stride"] - 1) // L["stride"]
        tensors[f"y{i}"] = te.Tensor(f"y{i}", (1, res, res, c_out), "int8", q(L["out_s"], L["zp"]))
        nodes.append(te.Node("CONV_2D", f"conv{i}", [prev, f"w{i}", f"b{i}"], [f"y{i}"],
                             {"padding": "SAME", "stride": (L["stride"], L["stride"]),
                              "dilation": (1, 1), "activation": "RELU"}))
        prev = f"y{i}"
    return te.Graph(tensors, nodes, ["x"], [prev], name=f"candidate_w{width}")


def _tflite(width: int, res: int) -> bytes:
    """The same candidate as a .tflite file, for TensorFlow Lite Micro's golden."""
    mb = ModelBuilder()
    cur = first = mb.tensor("x", (1, res, res, 3), "int8", scale=0.05, zero_point=-3)
    for i, L in enumerate(_layers(width, res)):
        c_out = len(L["ws"])
        zeros = np.zeros(c_out, np.int64)
        wi = mb.const(f"w{i}", L["w"], "int8", scale=L["ws"], zero_point=zeros)
        bi = mb.const(f"b{i}", L["b"], "int32", scale=L["bs"], zero_point=zeros)
        res = (res + L["stride"] - 1) // L["stride"]
        y = mb.tensor(f"y{i}", (1, res, res, c_out), "int8", scale=L["out_s"], zero_point=L["zp"])
        mb.op("CONV_2D", [cur, wi, bi], [y], padding="SAME", stride_h=L["stride"],
              stride_w=L["stride"], fused_activation_function="RELU")
        cur = y
    mb.inputs([first])
    mb.outputs([cur])
    return mb.build()


def test_step_by_step_pipeline_plans_what_compile_model_plans(tmp_path):
    model = tmp_path / "candidate.tflite"
    model.write_bytes(_tflite(8, 64))
    opts = te.CompileOptions(board="stm32f746", sram_limit=32_000)   # only with patches
    graph = te.load_model(model, opts)
    graph = te.set_target(graph, opts.board)
    graph = te.run_passes(graph, opts)
    plan = te.plan_memory(graph, opts.plan_options())
    c = te.compile_model(model, opts)
    assert plan.arena_bytes == c.plan.arena_bytes
    assert plan.offsets == c.plan.offsets
    assert plan.patch is not None and plan.patch.spec() == c.plan.patch.spec()
    # and from the graph built in memory: the same network, the same plan
    g = te.compile_graph(_ir_graph(8, 64), opts)
    assert g.plan.arena_bytes == c.plan.arena_bytes and g.plan.patch.spec() == c.plan.patch.spec()


def test_plan_options_switch_techniques_off():
    base = te.run_passes(te.set_target(_ir_graph(8, 48), "stm32f746"))
    plain = te.run_passes(te.set_target(_ir_graph(8, 48), "stm32f746"))
    best = te.plan_memory(base)
    linear = te.plan_memory(plain, te.PlanOptions(planner="linear", overlap=False, fuse=False,
                                                  compact_params=False))
    # the linear plan keeps every buffer apart: the sum of the activations at least
    acts = sum(t.nbytes for t in plain.tensors.values() if not t.is_const)
    assert linear.arena_bytes >= acts > best.arena_bytes


def test_in_memory_graph_compiles_and_runs_bit_exact_with_tflm(tmp_path):
    """tinynas' path: a Graph without a file -> peak SRAM, then the firmware on the host, whose
    output equals TFLM's running the same network written as a .tflite file."""
    g = _ir_graph(4, 16)
    c = te.compile_graph(g, te.CompileOptions(board="host"))
    assert c.plan.arena_bytes > 0 and c.source == "candidate_w4"
    report = te.write_project(c, tmp_path / "p")
    assert report["arena_bytes"] == c.plan.arena_bytes
    assert "candidate_w4" in (tmp_path / "p" / "model.c").read_text()

    path = tmp_path / "candidate.tflite"
    path.write_bytes(_tflite(4, 16))
    records = te.random_records(c.graph, 2, seed=1)
    expected = run_tflm_many(path, records)
    result = te.build_and_run(c, tmp_path / "p", records)
    for got, want in zip(result.outputs, expected):
        assert len(np.unique(got[0])) > 20      # not a saturated, all-alike output
        np.testing.assert_array_equal(got[0], np.asarray(want[0]).reshape(got[0].shape))
    for rec, want in zip(records, expected):
        got = te.run_reference(c.graph, rec)[0]
        np.testing.assert_array_equal(got, np.asarray(want[0]).reshape(got.shape))


def test_c_helpers_for_code_that_renders_its_own_c():
    env = te.environment()
    assert env.get_template("unpack_channels.c.j2") is not None
    assert te.c_comment("a */ b\n c") == "a * / b c"
    assert te.ctype_of(np.zeros(2, np.int16)) == "int16_t"
    arr = te.ConstArray("te_x", "int32_t", np.array([1, -2147483648], np.int32), "x")
    assert arr.nbytes == 8 and "(-2147483647 - 1)" in arr.body()


def test_an_operator_of_ones_own_is_planned_like_any_other():
    """tinytrain's path: a backward op registered through the API gets its scratch planned."""
    from tinyengine import ops

    @te.register_op
    class GradScale(te.OpDef):
        name = "TEST_GRAD_SCALE_F32"
        inplace = True

        def scratch_bytes(self, node, graph):
            return 96

    try:
        names = ["x", "y", "z", "w"]
        g = te.Graph({t: te.Tensor(t, (1, 64), "float32") for t in names},
                     [te.Node("TEST_GRAD_SCALE_F32", f"s{i}", [a], [b])
                      for i, (a, b) in enumerate(zip(names, names[1:]))], ["x"], ["w"])
        plan = te.plan_memory(g, te.PlanOptions(fuse=False, compact_params=False))
        assert set(plan.scratch) == {"s0", "s1", "s2"} and plan.scratch["s1"][1] == 96
        assert plan.aliases == {"z": "y"}     # in place where the input dies (not the model's I/O)
    finally:
        del ops.REGISTRY["TEST_GRAD_SCALE_F32"]
