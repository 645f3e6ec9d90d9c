"""tinytrain's training graph: the walk's pruning, its gradients against torch.autograd of
tinytrain.torch_sim on a small int8 model, the schemes' errors and the memory plan of
mcunet-vww1 (sparse update under 256 KB on stm32f746; full backprop far larger)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import tinyengine as te
from tests.tflite_builder import ModelBuilder
from tinytrain import graph as tgm
from tinytrain import scheme as sc

torch = pytest.importorskip("torch")
from tinytrain import torch_sim as ts  # noqa: E402

BATCH, CLASSES = 2, 3


def small_model(path, batch=BATCH):
    """x[batch,10,10,3] -> conv 3x3/2 SAME relu6 -> depthwise 3x3 (x2) relu -> 1x1 conv -> ADD
    with the conv's output (a residual: its gradient is a sum) -> avg pool 5x5 -> reshape ->
    fully connected (the head).  The 1x1 conv's weights are quantized per tensor, the others
    per channel."""
    rng = np.random.default_rng(3)
    mb = ModelBuilder()

    def w(name, shape, axis, per_tensor=False):
        n = 1 if per_tensor else shape[axis]
        return mb.const(name, rng.integers(-127, 128, shape), "int8",
                        scale=rng.uniform(0.004, 0.012, n), zero_point=np.zeros(n, np.int64),
                        quantized_dimension=axis)

    def b(name, n, s):
        return mb.const(name, rng.integers(-300, 300, n), "int32", scale=np.full(n, s),
                        zero_point=np.zeros(n, np.int64))

    BATCH = batch  # noqa: N806
    x = mb.tensor("x", (BATCH, 10, 10, 3), scale=0.04, zero_point=-5)
    c1 = mb.tensor("c1", (BATCH, 5, 5, 4), scale=0.03, zero_point=-128)
    mb.op("CONV_2D", [x, w("w1", (4, 3, 3, 3), 0), b("b1", 4, 3e-4)], [c1], padding="SAME",
          stride_w=2, stride_h=2, fused_activation_function="RELU6")
    d = mb.tensor("d", (BATCH, 5, 5, 8), scale=0.05, zero_point=-128)
    mb.op("DEPTHWISE_CONV_2D", [c1, w("w2", (1, 3, 3, 8), 3), b("b2", 8, 2e-4)], [d],
          padding="SAME", stride_w=1, stride_h=1, depth_multiplier=2,
          fused_activation_function="RELU")
    p = mb.tensor("p", (BATCH, 5, 5, 4), scale=0.06, zero_point=3)
    mb.op("CONV_2D", [d, w("w3", (4, 1, 1, 8), 0, per_tensor=True), b("b3", 4, 4e-4)], [p],
          padding="VALID",
          stride_w=1, stride_h=1)
    r = mb.tensor("r", (BATCH, 5, 5, 4), scale=0.07, zero_point=-2)
    mb.op("ADD", [p, c1], [r])
    g = mb.tensor("g", (BATCH, 1, 1, 4), scale=0.05, zero_point=-1)
    mb.op("AVERAGE_POOL_2D", [r], [g], padding="VALID", stride_w=1, stride_h=1,
          filter_width=5, filter_height=5)
    f = mb.tensor("f", (BATCH, 4), scale=0.05, zero_point=-1)
    mb.op("RESHAPE", [g, mb.const("shape", np.array([BATCH, 4], np.int32))], [f])
    y = mb.tensor("y", (BATCH, 5), scale=0.1, zero_point=0)
    mb.op("FULLY_CONNECTED", [f, w("w4", (5, 4), 0), b("b4", 5, 5e-4)], [y])
    mb.inputs([x])
    mb.outputs([y])
    path.write_bytes(mb.build())
    return path


@pytest.fixture(scope="module")
def forward(tmp_path_factory):
    path = small_model(tmp_path_factory.mktemp("train") / "small.tflite")
    return tgm.forward_graph(str(path), "host", CLASSES, seed=1)


def layer_names(fwd):
    return [lay.name for lay in sc.trainable_layers(fwd)]


def kernels_of(tg):
    """(forward node, kernel) of each backward node; the clamp's mask kernels as "mask"."""
    return [(n.name.split("/")[0], "mask" if "clamp" in n.attrs.get("kernel", "") else
             n.attrs.get("kernel")) for n in tg.graph.nodes]


SCHEMES = {
    "bias-only": sc.Scheme(bias_last=4),
    "sparse": sc.Scheme(bias_last=2, weights=((1, 0.5), (2, 0.75))),
    "full": sc.Scheme(full=True),
}


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_gradients_match_torch_autograd(forward, name):
    """Every parameter gradient of the training graph (run by tinyengine's reference, the
    backward ops' NumPy kernels in float64 rounded to float32 per op) equals torch.autograd's
    through the same int8 forward within rtol 1e-4 + 1e-5 of the largest magnitude (float32
    rounding of sums of at most a few hundred terms)."""
    tg = tgm.build(forward, SCHEMES[name], lr=0.0)
    rng = np.random.default_rng(7)
    x = rng.integers(-128, 128, forward.tensors[forward.inputs[0]].shape).astype(np.int8)
    labels = np.array([0, 2], np.int32)
    values = te.run_reference(tg.graph, [x, labels], keep_all=True)
    specs = {n.name: tgm.op_spec(n, forward) for n in forward.nodes}
    want = ts.graph_gradients(forward, values, specs, labels, {p: None for p in tg.params})
    assert tg.params, "the scheme trains something"
    for p, (node, slot, channels) in tg.params.items():
        got = values[tg.grads[p]]
        exp = want[p]
        if channels is not None:
            exp = np.take(exp, channels, axis=-1 if node.startswith("depthwise") else 0)
        assert np.abs(exp).max() > 0, (p, "a gradient that is all zero tests nothing")
        np.testing.assert_allclose(got, exp, rtol=1e-4, atol=1e-5 * np.abs(exp).max(),
                                   err_msg=f"{name}: {p} ({node} {slot})")


def test_pruning(forward):
    """Bias-only: no weight gradient outside the head; sparse: weight gradients of exactly the
    chosen layers, only their selected rows; no input gradient below the earliest trained
    layer; each update right after its gradient."""
    names = layer_names(forward)
    bias_only = tgm.build(forward, sc.Scheme(bias_last=2))
    ks = kernels_of(bias_only)
    weight_grads = {n for n, k in ks if k and "grad_weight" in k}
    assert weight_grads == {"head"}
    earliest = names[-2]
    below = names[:-2]
    assert not any(n in below for n, k in ks if k and ("grad" in k or k == "mask")), ks
    assert not any(n == earliest and "grad_input" in k for n, k in ks if k), ks

    sparse = tgm.build(forward, sc.Scheme(weights=((1, 0.5),)))
    ks = kernels_of(sparse)
    assert {n for n, k in ks if k and "grad_weight" in k} == {names[1], "head"}
    assert not any(n == names[0] for n, k in ks if k and "grad" in k)     # frozen, below
    assert not any(n == names[1] and "grad_input" in k for n, k in ks if k)
    w = forward.tensors[next(p for p, v in sparse.params.items() if v[0] == names[1])]
    assert sparse.graph.tensors[sparse.grads[w.name]].shape[-1] == w.shape[-1] // 2
    for i, node in enumerate(sparse.graph.nodes):
        if node.attrs.get("kernel", "").startswith(("te_conv_2d_grad_weight",
                                                     "te_depthwise_conv_2d_grad_weight",
                                                     "te_fully_connected_grad_weight")):
            assert sparse.graph.nodes[i + 1].attrs["kernel"] == "te_sgd_update_s8"
            assert sparse.graph.nodes[i + 1].inputs[1] == node.outputs[0]
    # momentum: one float32 buffer per trained gradient, counted as optimizer state
    mom = tgm.build(forward, sc.Scheme(weights=((1, 0.5),)), momentum=0.9)
    assert mom.state_bytes() == sum(4 * mom.graph.tensors[g].size for g in mom.grads.values())
    assert sparse.state_bytes() == 0
    # the residual's gradient is a sum of two contributions
    full = tgm.build(forward, sc.Scheme(full=True))
    assert any(n.op == "TE_GRAD_ACCUMULATE_F32" for n in full.graph.nodes)


def test_scheme_errors(forward, tmp_path):
    names = layer_names(forward)
    with pytest.raises(sc.SchemeError, match=r"layer 'conv_9' does not exist \(trainable layers: "
                                             rf"0:{names[0]}"):
        tgm.build(forward, sc.from_flags(weights="conv_9:0.5"))
    with pytest.raises(sc.SchemeError, match=r"layer 7 does not exist"):
        tgm.build(forward, sc.from_flags(weights="7:0.5"))
    for bad in ("0", "1.5", "-0.2"):
        with pytest.raises(sc.SchemeError, match=r"ratio of layer 1 must be in \(0, 1\]"):
            sc.from_flags(weights=f"1:{bad}")
    with pytest.raises(sc.SchemeError, match="not LAYER:RATIO"):
        sc.from_flags(weights="conv")
    with pytest.raises(sc.SchemeError, match="more than the 4 trainable layers"):
        tgm.build(forward, sc.Scheme(bias_last=9))
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"bias_last": 2, "weights": {names[1]: 0.5, "-2": 1}}))
    s = sc.load(f)
    assert s.bias_last == 2 and s.weights == ((names[1], 0.5), (-2, 1))
    f.write_text(json.dumps({"bias": 2}))
    with pytest.raises(sc.SchemeError, match="unknown key 'bias'"):
        sc.load(f)
    f.write_text("{")
    with pytest.raises(sc.SchemeError, match="not JSON"):
        sc.load(f)
    # channels chosen by magnitude
    lay = sc.trainable_layers(forward)[0]
    wt = forward.tensors[lay.weights]
    norms = np.sqrt((wt.data.reshape(lay.channels, -1).astype(float) ** 2).sum(1)) * wt.quant.scale
    assert sc.top_channels(forward, lay, 0.5) == tuple(sorted(np.argsort(-norms)[:2]))


# -- memory plan and the CLI ----------------------------------------------------------------------
MCUNET_SPARSE = ["--bias-last", "12", "--weights=-2:0.5,-5:0.25"]


def test_mcunet_plan_sparse_fits_full_does_not(models_dir, capsys):
    """mcunet-vww1 on stm32f746: the sparse scheme's peak SRAM (arena + trained parameters +
    stack) under 256 KB; full backprop of the same network, planned the same way, several
    times larger and refused with the bytes needed and the board's."""
    from tinytrain import cli, memory

    model = models_dir / "mcunet" / "mcunet-vww1.tflite"
    fwd = tgm.forward_graph(str(model), "stm32f746", 10)
    sparse = memory.plan(tgm.build(fwd, sc.from_flags(12, "-2:0.5,-5:0.25")), "stm32f746")
    full = memory.plan(tgm.build(fwd, sc.Scheme(full=True)), "stm32f746")
    forward_only = te.plan_memory(fwd, te.PlanOptions()).arena_bytes
    with capsys.disabled():
        print(f"\nmcunet-vww1 training plan on stm32f746: sparse {sparse.breakdown()}; "
              f"full backprop {full.breakdown()}; inference arena {forward_only}")
    assert sparse.peak_sram_bytes <= 256 * 1024
    assert sparse.arena_bytes > forward_only          # saved activations and gradients
    assert full.peak_sram_bytes > 3 * sparse.peak_sram_bytes and not full.fits

    assert cli.main(["plan", str(model), "--classes", "10", *MCUNET_SPARSE]) == 0
    out = capsys.readouterr().out
    assert f"peak SRAM    {sparse.peak_sram_bytes} bytes" in out
    assert f"full backprop {full.peak_sram_bytes} bytes" in out
    assert cli.main(["plan", str(model), "--classes", "10", "--full"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"needs {full.peak_sram_bytes} bytes" in err[0] \
        and "stm32f746 has 327680" in err[0], err


@pytest.mark.parametrize("argv, message", [
    (["--weights", "conv_9:0.5"], "layer 'conv_9' does not exist (trainable layers: 0:"),
    (["--weights", "1:1.5"], "the ratio of layer 1 must be in (0, 1], got 1.5"),
    (["--bias-last", "2", "--scheme", "s.json"], "exclude each other"),
    (["--board", "nosuch"], "nosuch"),
    (["--classes", "1"], "--classes must be an integer >= 2"),
])
def test_cli_errors_one_line_exit_2(tmp_path, capsys, argv, message):
    from tinytrain import cli

    model = small_model(tmp_path / "small.tflite")
    args = ["plan", str(model), "--classes", "3", "--board", "host", *argv]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tinytrain: error:") and message in err[0], err


def test_op_without_gradient_rule_is_named(tmp_path, capsys):
    """A MAX_POOL_2D between the loss and the trained layer: one line naming the node and op."""
    from tinytrain import cli

    mb = ModelBuilder()
    x = mb.tensor("x", (1, 6, 6, 2), scale=0.05, zero_point=0)
    c = mb.tensor("c", (1, 6, 6, 3), scale=0.05, zero_point=0)
    mb.op("CONV_2D", [x, mb.const("w", np.ones((3, 1, 1, 2)), "int8", scale=np.full(3, 0.01),
                                  zero_point=np.zeros(3, np.int64)), -1], [c],
          padding="SAME", stride_w=1, stride_h=1)
    m = mb.tensor("m", (1, 3, 3, 3), scale=0.05, zero_point=0)
    mb.op("MAX_POOL_2D", [c], [m], padding="VALID", stride_w=2, stride_h=2, filter_width=2,
          filter_height=2)
    f = mb.tensor("f", (1, 27), scale=0.05, zero_point=0)
    mb.op("RESHAPE", [m, mb.const("s", np.array([1, 27], np.int32))], [f])
    y = mb.tensor("y", (1, 4), scale=0.1, zero_point=0)
    mb.op("FULLY_CONNECTED", [f, mb.const("w2", np.ones((4, 27)), "int8", scale=np.full(4, 0.01),
                                          zero_point=np.zeros(4, np.int64)), -1], [y])
    mb.inputs([x])
    mb.outputs([y])
    path = tmp_path / "maxpool.tflite"
    path.write_bytes(mb.build())
    assert cli.main(["plan", str(path), "--classes", "3", "--board", "host"]) == 0
    capsys.readouterr()
    assert cli.main(["plan", str(path), "--classes", "3", "--board", "host",
                     "--weights", "0:1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'max_pool_2d_1' (MAX_POOL_2D)" in err[0] \
        and "no gradient rule" in err[0], err


def test_default_scheme_is_the_largest_that_fits(forward, monkeypatch):
    """Without scheme options: the weights of the last two 1x1 convs before the head (half,
    a quarter of their channels) and the biases of the most last layers that fit the budget;
    one layer more does not fit; a budget too small for the weights drops them."""
    from tinytrain import memory

    def peak(s):
        return memory.plan(tgm.build(forward, s), "host").peak_sram_bytes

    with_w = sc.Scheme(bias_last=2, weights=(("conv_2d_2", 0.5),))     # the only 1x1 conv
    monkeypatch.setattr(memory, "DEFAULT_BUDGET", peak(with_w))
    s = memory.default_scheme(forward, "host")
    assert s.weights == with_w.weights and s.bias_last >= 2
    assert peak(s) <= memory.DEFAULT_BUDGET
    assert peak(sc.Scheme(bias_last=s.bias_last + 1, weights=s.weights)) > memory.DEFAULT_BUDGET
    monkeypatch.setattr(memory, "DEFAULT_BUDGET", peak(sc.Scheme(bias_last=1)))
    s = memory.default_scheme(forward, "host")
    assert s.weights == () and s.bias_last >= 1
    assert peak(sc.Scheme(bias_last=s.bias_last + 1)) > memory.DEFAULT_BUDGET


@pytest.mark.slow
def test_mcunet_default_scheme_under_256kb(models_dir, capsys):
    from tinytrain import cli

    model = models_dir / "mcunet" / "mcunet-vww1.tflite"
    assert cli.main(["plan", str(model), "--classes", "10"]) == 0
    out = capsys.readouterr().out
    peak = int(out.split("peak SRAM")[1].split()[0])
    with capsys.disabled():
        print("\n" + "\n".join(ln for ln in out.splitlines() if not ln.startswith("trained")))
    assert "scheme       default: biases of the last" in out and peak <= 256 * 1024
