"""The training firmware (tinytrain/firmware.py): te_train_step / te_predict generated from the
training graph, trained on the host build and on QEMU's Cortex-M7 (stm32f746).

* 100 steps of a sparse scheme with momentum and a cosine schedule on a small int8 model
  (conv, depthwise, 1x1 conv, ADD, average pool, fully connected): params.bin is the same on
  the host and on the Cortex-M7 bit for bit, and agrees with the NumPy reference of the
  training graph (tinytrain.reference, float64 gradients) run over the same 100 steps;
* pruning: a frozen layer's weight gradient and the input gradients below the earliest
  trained layer are absent from the generated C;
* mcunet-vww1 with the default scheme: compiles, links for the Cortex-M7 with the SRAM the
  plan says, trains a few steps on QEMU;
* the command line's errors."""
from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest

import tinyengine as te
from tests.test_train_graph import small_model
from tinytrain import cli
from tinytrain import firmware as fw
from tinytrain import graph as tgm
from tinytrain import memory
from tinytrain import ops as bops
from tinytrain import reference as ref
from tinytrain import scheme as sc

STEPS, TESTS, CLASSES = 100, 12, 3
# the conv's and the depthwise's weights (half their channels), the biases of the last three
# layers (the depthwise, the 1x1 conv, the head): the 1x1 conv's weights are frozen
SCHEME = sc.Scheme(bias_last=3, weights=((0, 0.5), (1, 0.5)))
OPTIM = dict(lr=0.01, momentum=0.9, lr_schedule="cosine")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return small_model(tmp_path_factory.mktemp("tfw") / "small.tflite", batch=1)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(13)
    x = rng.integers(-128, 128, (STEPS + TESTS, 10, 10, 3)).astype(np.int8)
    y = rng.integers(0, CLASSES, STEPS + TESTS)
    return (x[:STEPS], y[:STEPS]), (x[STEPS:], y[STEPS:])


@pytest.fixture(scope="module")
def host_run(small, data, tmp_path_factory):
    p = fw.compile_training(str(small), classes=CLASSES, scheme=SCHEME, board="host",
                            out_dir=tmp_path_factory.mktemp("tfw") / "host", **OPTIM)
    calls = []
    result = fw.run_training(p, *data, progress=lambda done, total: calls.append((done, total)))
    total = STEPS + 2 * TESTS               # one epoch's steps, two evaluations
    assert calls == [(k, total) for k in range(1, total + 1)]
    return p, result


# -- the NumPy reference of the same 100 steps ---------------------------------------------------
def cosine_lr(lr: float, step: int, total: int) -> np.float32:
    """The firmware's schedule (codegen_templates/train/model.c.j2) in float32, operation for
    operation: lr * (0.5 * (1 + cos(pi * t))), its own cosine."""
    f = np.float32
    t = f(step) / f(total)
    y = f(3.14159265) * (t - f(0.5))
    y2 = y * y
    s = f(-2.50521084e-8)
    for c in (2.75573192e-6, -1.98412698e-4, 8.33333333e-3, -1.66666667e-1, 1.0):
        s = s * y2 + f(c)
    return f(lr) * (f(0.5) * (f(1.0) + -(s * y)))


def simulate(project, xs, ys) -> dict:
    """The trained parameters and momentum buffers after one step per sample, by the NumPy
    reference: te.run_reference of the training graph (forward, loss, backward: float64
    gradients stored as float32) on the current parameters, then reference.sgd_update_*
    with each update node's arguments at the step's learning rate."""
    g = project.tg.graph
    state = {p["name"]: g.tensors[p["name"]].data.copy() for p in project.manifest["params"]}
    state.update({v["name"]: np.zeros(v["shape"], np.float32)
                  for v in project.manifest["velocities"]})
    updates = [n for n in g.nodes if n.attrs.get("kernel") in bops.UPDATE_KERNELS]
    for step, (x, y) in enumerate(zip(xs, ys)):
        tensors = {**g.tensors, **{t: replace(g.tensors[t], data=v) for t, v in state.items()}}
        graph = te.Graph(tensors, g.nodes, g.inputs, g.outputs, g.name, g.meta)
        values = te.run_reference(graph, [x[None], np.array([y], np.int32)], keep_all=True)
        lr = float(cosine_lr(OPTIM["lr"], step, len(xs)))
        for node in updates:
            param, grad, qas, vel = node.inputs
            args = dict(node.attrs["args"], lr=lr)
            new, v = ref.KERNELS[node.attrs["kernel"]](
                state[param], values[grad], None if qas is None else values[qas],
                None if vel is None else state[vel], **args)
            state[param] = new
            if vel is not None:
                state[vel] = v
    return state


def test_params_agree_with_reference(host_run, data):
    """After 100 steps the firmware's parameters (host build) agree with the NumPy reference
    of the same steps.  Tolerance: the kernels sum float32 products where the reference sums
    in float64, so a gradient differs in its last bits; where the float32 step of an int8
    weight lands within that of x.5, the two round to neighbouring integers (1 LSB), and the
    forward after it then differs a little.  So: int8 weights at most 1 LSB apart, in at most
    3% of the trained values; int32 biases within 2% of how far they moved (+-3); momentum
    buffers (float32 sums of float32 gradients) within 1e-3 relative.  (Measured: weights
    and biases equal, momentum within 1e-5 relative.)"""
    assert_agrees_with_reference(*host_run, data[0])


def assert_agrees_with_reference(project, result, train):
    """test_params_agree_with_reference's check of one run's params.bin (its docstring)."""
    want = simulate(project, *train)
    g = project.tg.graph
    for p in project.manifest["params"]:
        name, start = p["name"], g.tensors[p["name"]].data
        got, exp = result.params[name].astype(np.int64), want[name].astype(np.int64)
        assert (got != start).any(), f"{name}: the firmware never updated it"
        if p["dtype"] == "int8":
            layer, _, sel = project.tg.params[name]
            op = next(n.op for n in g.nodes if n.name == layer)
            n_all = got.shape[-1 if op == "DEPTHWISE_CONV_2D" else 0]
            diff = np.abs(got - exp)
            assert diff.max() <= 1, f"{name}: {diff.max()} LSB from the reference"
            n = got.size if sel is None else got.size * len(sel) // n_all
            assert (diff != 0).sum() <= max(1, 0.03 * n), \
                f"{name}: {(diff != 0).sum()} of {n} trained values 1 LSB off"
        else:
            moved = np.abs(exp - start.astype(np.int64))
            assert (np.abs(got - exp) <= 0.02 * moved + 3).all(), f"{name}: {got} vs {exp}"
    for v in project.manifest["velocities"]:
        np.testing.assert_allclose(result.params[v["name"]].reshape(-1),
                                   want[v["name"]].reshape(-1), rtol=1e-3,
                                   atol=1e-4 * np.abs(want[v["name"]]).max())


@pytest.mark.qemu
def test_host_and_cortex_m7_same_bits(small, data, host_run, tmp_path):
    """The same 100 steps on QEMU's Cortex-M7 (stm32f746): params.bin (parameters and momentum
    buffers) and every TT_EPOCH line equal the host's bit for bit; the linked image's SRAM is
    the plan's arena + trained state + the runner's few statics."""
    host_project, host = host_run
    p = fw.compile_training(str(small), classes=CLASSES, scheme=SCHEME, board="stm32f746",
                            out_dir=tmp_path / "m7", **OPTIM)
    m7 = fw.run_training(p, *data)
    assert (p.dir / "params.bin").read_bytes() == (host_project.dir / "params.bin").read_bytes()
    epochs = [ln for ln in m7.stdout.splitlines() if ln.startswith("TT_EPOCH")]
    assert epochs == [ln for ln in host.stdout.splitlines() if ln.startswith("TT_EPOCH")]
    assert len(m7.curve) == 2 and m7.curve[0][1] is None and m7.curve[1][1] > 0
    assert m7.step_instructions > m7.predict_instructions > 0 and m7.stack_bytes > 0
    sizes = te.project_size(p.dir)
    plan = p.plan
    assert 0 <= sizes["sram_static_bytes"] - (plan.arena_bytes + plan.param_bytes
                                              + plan.state_bytes) < 1024
    assert m7.peak_sram_bytes == sizes["sram_static_bytes"] + m7.stack_bytes


# -- bias-only layers on the DSP kernels ----------------------------------------------------------
BIAS_SCHEME = sc.Scheme(bias_last=4)       # every layer's bias, no weights


@pytest.fixture(scope="module")
def bias_host_run(small, data, tmp_path_factory):
    p = fw.compile_training(str(small), classes=CLASSES, scheme=BIAS_SCHEME, board="host",
                            out_dir=tmp_path_factory.mktemp("tfw") / "bias_host", **OPTIM)
    return p, fw.run_training(p, *data)


def _forward_calls(project) -> dict:
    """layer name -> the kernel te_train_step's forward calls for it (model.c: the first
    te_* call after the operator's comment, a table's te_unpack_channels aside)."""
    body = _calls(project).split("float te_train_step(", 1)[1].split("\n}\n", 1)[0]
    ops = re.split(r"\n\s*/\* \[\d+\] ", body)[1:]
    out = {}
    for op in ops:
        m = re.match(r"(CONV_2D|DEPTHWISE_CONV_2D|FULLY_CONNECTED) '([^']+)'", op)
        if m:
            out[m.group(2)] = next(k for k in re.findall(r"\b(te_\w+)\(", op)
                                   if k != "te_unpack_channels")
    return out


@pytest.mark.qemu
@pytest.mark.parametrize("board", ["stm32f746", "stm32f411"])
def test_bias_only_layers_run_the_dsp_kernels_bit_exact(small, data, bias_host_run, board,
                                                        tmp_path):
    """Layers whose bias alone trains keep the board's DSP kernels (the 3x3 and the 1x1 conv:
    te_conv_2d_s8_dsp, te_conv_2d_1x1_s8_dsp, named in the generated C; the depthwise with
    multiplier 2 has none), each updated bias written into the kernel's table
    (te_fold_bias_s32) and the 1x1 conv's input gradient reading the packed weights: 100
    steps on QEMU's Cortex-M7 and Cortex-M4 give the host build's params.bin (portable
    kernels) bit for bit, the biases moved, and both agree with the NumPy reference."""
    host_project, host = bias_host_run
    p = fw.compile_training(str(small), classes=CLASSES, scheme=BIAS_SCHEME, board=board,
                            out_dir=tmp_path / board, **OPTIM)
    calls = _forward_calls(p)
    assert calls == {"conv_2d_0": "te_conv_2d_s8_dsp",
                     "depthwise_conv_2d_1": "te_depthwise_conv_2d_s8",
                     "conv_2d_2": "te_conv_2d_1x1_s8_dsp",
                     "head": "te_fully_connected_per_channel_s8"}, calls
    assert set(_forward_calls(host_project).values()) <= {
        "te_conv_2d_s8", "te_depthwise_conv_2d_s8", "te_fully_connected_per_channel_s8"}
    c = _calls(p)
    assert c.count("te_fold_bias_s32(") == 2 and "te_conv_2d_grad_input_f32_packed(" in c
    r = fw.run_training(p, *data)
    assert (p.dir / "params.bin").read_bytes() == (host_project.dir / "params.bin").read_bytes()
    for name in ("b1", "b3"):
        assert (r.params[name] != p.tg.graph.tensors[name].data).any(), name
    assert_agrees_with_reference(host_project, host, data[0])


@pytest.mark.parametrize("shape", [(5, 3, 3, 6), (7, 1, 1, 9), (4, 1, 1, 16), (3, 5, 5, 2)])
def test_grad_input_reads_packed_weights_to_the_same_bits(shape):
    """te_conv_2d_grad_input_f32_packed / te_depthwise_conv_2d_grad_input_f32_packed (the
    backward of a layer whose frozen weights the forward's DSP kernel reads, packed) give the
    plain-layout kernels' result bit for bit: odd channel counts (a conv's odd last row, a
    depthwise's channels past the last group of 4), 1x1 and larger windows, strides 1 and 2."""
    from tests import ctrain
    from tinyengine.ops.conv import pack_weights_dsp
    from tinyengine.ops.depthwise_conv import pack_filter_dsp
    rng = np.random.default_rng(sum(shape))
    oc, kh, kw, ic = shape
    for stride in (1, 2):
        in_hw = (9, 8)
        out_hw = ((in_hw[0] - kh) // stride + 1, (in_hw[1] - kw) // stride + 1)
        w = rng.integers(-128, 128, shape).astype(np.int8)
        scale = rng.uniform(0.001, 0.02, oc).astype(np.float32)
        g = rng.normal(size=(1, *out_hw, oc)).astype(np.float32)
        g[g < -1] = 0.0                                   # skipped zeros too
        args = dict(in_hw=in_hw, stride=(stride, stride), pad=(0, 0))
        want = ctrain.conv_2d_grad_input(g, w, scale, **args)
        got = ctrain.conv_2d_grad_input(g, w, scale, packed=pack_weights_dsp(w.reshape(oc, -1)),
                                        **args)
        assert want.tobytes() == got.tobytes() and np.abs(want).max() > 0
        dw = w.reshape(oc, kh, kw, ic)[:, :, :, :1].transpose(3, 1, 2, 0).copy()   # [1,kh,kw,oc]
        gd = rng.normal(size=(1, *out_hw, oc)).astype(np.float32)
        want = ctrain.depthwise_conv_2d_grad_input(gd, dw, scale, depth_multiplier=1, **args)
        got = ctrain.depthwise_conv_2d_grad_input(gd, dw, scale, depth_multiplier=1,
                                                  packed=pack_filter_dsp(dw), **args)
        assert want.tobytes() == got.tobytes() and np.abs(want).max() > 0


@pytest.mark.qemu
def test_profile_counts_every_operator_of_a_step(small, data, tmp_path):
    """compile_training(profile=True) on the Cortex-M7: one TT_LAYER count per operator of
    te_train_step, summing to the step's count (the marks pause the counter; what remains is
    the few instructions of the calls themselves); profile_rows names them, forward and
    backward."""
    p = fw.compile_training(str(small), classes=CLASSES, scheme=BIAS_SCHEME, board="stm32f746",
                            out_dir=tmp_path / "prof", profile=True, **OPTIM)
    r = fw.run_training(p, (data[0][0][:2], data[0][1][:2]), (data[1][0][:1], data[1][1][:1]))
    rows = fw.profile_rows(p, r)
    assert [i for i, *_ in rows] == list(range(len(p.tg.graph.nodes)))
    total = sum(n for *_, n in rows)
    assert r.step_instructions - 100 <= total <= r.step_instructions
    kinds = {(part, k) for _, _, k, part, _ in rows}
    assert ("forward", "te_conv_2d_1x1_s8_dsp") in kinds and ("backward", "te_fold_bias_s32") in kinds


@pytest.mark.qemu
def test_a_bias_past_the_dsp_kernels_range_stops_the_firmware(small, data, tmp_path):
    """A learning rate so large that a bias trained on a DSP kernel leaves the range that kernel
    computes exactly (te_fold_bias_s32's limit): the firmware stops with one TE_ERROR line
    (run_training: RunError naming it) instead of training on with wrong outputs."""
    p = fw.compile_training(str(small), classes=CLASSES, scheme=BIAS_SCHEME, board="stm32f746",
                            out_dir=tmp_path / "big", lr=1e12)
    with pytest.raises(te.RunError, match="a trained bias left the range of its layer's fast "
                                          "forward kernel"):
        fw.run_training(p, (data[0][0][:5], data[0][1][:5]), (data[1][0][:2], data[1][1][:2]))


def test_firmware_arena_is_the_reported_plan(host_run, small):
    """The firmware's arena is the plan `tinytrain plan` reports (memory.plan of the same
    training graph): the same bytes in model.h."""
    project, _ = host_run
    fwd = tgm.forward_graph(str(small), "host", CLASSES, seed=0)
    tg = tgm.build(fwd, SCHEME, lr=OPTIM["lr"], momentum=OPTIM["momentum"])
    assert memory.plan(tg, "host") == project.plan
    assert f"#define TE_ARENA_BYTES {project.plan.arena_bytes}\n" in \
        (project.dir / "model.h").read_text()


# -- pruning ------------------------------------------------------------------------------------
def _calls(project) -> str:
    return (project.dir / "model.c").read_text()


def test_pruned_backward_is_absent_from_the_c(host_run, small, tmp_path):
    """The 1x1 conv (conv_2d_2) trains its bias only: its input gradient is computed (the
    layers below train) but its weight gradient is not; training only the head's computes no
    input gradient at all, and the project carries none of those kernels."""
    project, _ = host_run
    c = _calls(project)
    assert "TE_CONV_2D_GRAD_INPUT_F32 'conv_2d_2/" in c
    assert "TE_CONV_2D_GRAD_WEIGHT_F32 'conv_2d_0/" in c
    assert "TE_CONV_2D_GRAD_WEIGHT_F32 'conv_2d_2/" not in c
    assert "TE_DEPTHWISE_CONV_2D_GRAD_WEIGHT_F32 'depthwise_conv_2d_1/" in c
    head_only = fw.compile_training(str(small), classes=CLASSES, scheme=sc.Scheme(),
                                    board="host", out_dir=tmp_path / "head")
    c = _calls(head_only)
    assert "te_fully_connected_grad_weight_f32(" in c and "te_sgd_update_s8(" in c
    for k in ("te_fully_connected_grad_input", "te_reshape_grad_input", "te_avg_pool_2d_grad",
              "te_conv_2d_grad_input", "te_conv_2d_grad_weight", "te_depthwise_conv_2d_grad"):
        assert k not in c, k
    # the head's own clamp (int8 saturation) is all that passes a gradient
    assert {f.name for f in (head_only.dir / "kernels").glob("*grad_input*")} == \
        {"te_clamp_grad_input_f32.c", "te_clamp_grad_input_f32.h"}
    m = json.loads((head_only.dir / "training.json").read_text())
    assert [p["name"] for p in m["params"]] == ["head/weights", "head/bias"]


# -- mcunet-vww1 --------------------------------------------------------------------------------
@pytest.mark.qemu
def test_mcunet_vww1_default_scheme_trains_on_cortex_m7(models_dir, tmp_path, capsys):
    """mcunet-vww1, 10 classes, the default scheme on stm32f746: the linked image's static SRAM
    is the plan's arena + trained state (+ the runner's statics, under 1 KB) and the peak
    (plus the measured stack) is under 256 KB; three training steps run on QEMU.  The layers
    below the earliest trained one run the inference kernels (those tinyengine prepares for
    the board), the depthwise layers whose bias alone trains te_depthwise_conv_2d_s8_dsp and
    the 1x1 convs te_conv_2d_1x1_s8_dsp; params.bin equals that of the host build (portable
    kernels) of the same scheme bit for bit, the trained biases moved."""
    model = models_dir / "mcunet" / "mcunet-vww1.tflite"
    p = fw.compile_training(str(model), classes=10, board="stm32f746", out_dir=tmp_path / "mcu")
    assert p.manifest["scheme"]["source"] == "default scheme"
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (4,) + p.input_shape[1:]).astype(np.int8)
    y = rng.integers(0, 10, 4)
    r = fw.run_training(p, (x[:3], y[:3]), (x[3:], y[3:]))
    calls, fwd = _forward_calls(p), p.tg.forward.nodes
    trained = p.tg.targets
    first = min(i for i, n in enumerate(fwd) if n.name in trained)
    for n in fwd[:first]:
        if n.name in calls:
            assert calls[n.name].startswith(n.params["kernel"]), (n.name, calls[n.name])
    bias_only = [n for n in fwd if n.name in trained and trained[n.name].channels is None]
    assert {calls[n.name] for n in bias_only if n.op == "DEPTHWISE_CONV_2D"} == \
        {"te_depthwise_conv_2d_s8_dsp"}
    assert "te_conv_2d_1x1_s8_dsp" in {calls[n.name] for n in bias_only if n.op == "CONV_2D"}
    c = _calls(p)        # their input gradients read the packed weights the forward reads
    assert "te_depthwise_conv_2d_grad_input_f32_packed(" in c
    assert "te_conv_2d_grad_input_f32_packed(" in c
    scheme = sc.Scheme(bias_last=p.manifest["scheme"]["bias_last"],
                       weights=tuple(map(tuple, p.manifest["scheme"]["weights"])))
    host = fw.compile_training(str(model), classes=10, board="host", scheme=scheme,
                               out_dir=tmp_path / "host")
    fw.run_training(host, (x[:3], y[:3]), (x[3:], y[3:]))
    assert (p.dir / "params.bin").read_bytes() == (host.dir / "params.bin").read_bytes()
    assert all((r.params[t] != p.tg.graph.tensors[t].data).any()
               for t, (layer, slot, _) in p.tg.params.items() if slot == "bias")
    sizes = te.project_size(p.dir)
    plan = p.plan
    statics = sizes["sram_static_bytes"] - (plan.arena_bytes + plan.param_bytes + plan.state_bytes)
    with capsys.disabled():
        print(f"\nmcunet-vww1 training firmware on stm32f746 (default scheme): "
              f"{r.step_instructions} instructions per step, {r.predict_instructions} per "
              f"prediction, peak SRAM {r.peak_sram_bytes} B measured (plan "
              f"{plan.breakdown()}), Flash {r.flash_bytes} B")
    assert 0 <= statics < 1024
    assert r.peak_sram_bytes <= plan.peak_sram_bytes <= 256 * 1024
    assert [e for e, _, _ in r.curve] == [0, 1] and r.curve[1][1] > 0
    assert r.step_instructions > r.predict_instructions > 10_000_000


# -- the command line ---------------------------------------------------------------------------
def test_compile_cli_and_errors(small, tmp_path, capsys):
    """`tinytrain compile` writes a project that builds on the host; bad options and a scheme
    naming a missing layer exit 2 with one line and leave nothing behind."""
    out = tmp_path / "p"
    assert cli.main(["compile", str(small), "--classes", "3", "--bias-last", "2",
                     "--momentum", "0.5", "--board", "host", "-o", str(out)]) == 0
    assert "peak SRAM" in capsys.readouterr().out
    assert (out / "training.json").is_file() and (out / "te_project.json").is_file()
    te.make_project(out)
    for argv, message in [
            (["--weights", "conv_9:0.5"], "layer 'conv_9' does not exist"),
            (["--epochs", "0"], "--epochs must be an integer >= 1"),
            (["--momentum", "1.5"], "--momentum must be in [0, 1)")]:
        bad = tmp_path / "bad"
        assert cli.main(["compile", str(small), "--classes", "3", "--board", "host",
                         "-o", str(bad), *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert not bad.exists() and not list(tmp_path.glob(".bad.*"))


def test_bad_data_is_refused(host_run):
    project, _ = host_run
    x = np.zeros((2, 10, 10, 3), np.int8)
    with pytest.raises(fw.TrainError, match="does not match the model's input"):
        fw.records(project, np.zeros((2, 8, 8, 3)), [0, 1])
    with pytest.raises(fw.TrainError, match=r"labels must be integers in \[0, 3\)"):
        fw.records(project, x, [0, 3])



def test_compile_refuses_a_scheme_that_does_not_fit(models_dir, tmp_path, capsys):
    """Full backprop of mcunet-vww1 on stm32f746: one line with the bytes the training graph
    needs and the board's, exit 2, no project."""
    model = models_dir / "mcunet" / "mcunet-vww1.tflite"
    out = tmp_path / "full"
    assert cli.main(["compile", str(model), "--classes", "10", "--full", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    full = memory.plan(tgm.build(tgm.forward_graph(str(model), "stm32f746", 10),
                                 sc.Scheme(full=True)), "stm32f746")
    assert len(err) == 1 and f"the training graph needs {full.peak_sram_bytes} bytes" in err[0] \
        and "stm32f746 has 327680" in err[0], err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_onnx_models_compile_and_train_on_the_host(tmp_path, capsys):
    """`tinytrain compile` on a QDQ ONNX file and on its float twin with --calibration (the
    torch CNN of tests/test_train_onnx.py, Gemm head): each project builds and trains three
    steps on the host from float NHWC data (quantized with the input's scale / zero point),
    the project read back with load_project."""
    pytest.importorskip("torch")
    from tests.test_train_onnx import SHAPE, export

    f = export("gemm", tmp_path)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, SHAPE[2], SHAPE[3], SHAPE[1])).astype(np.float32)   # NHWC
    y = rng.integers(0, 4, 5)
    for kind, extra in (("qdq", []), ("float", ["--calibration", str(f["calib"])])):
        out = tmp_path / kind
        assert cli.main(["compile", str(f[kind]), "--classes", "4", "--bias-last", "3",
                         "--board", "host", "-o", str(out), *extra]) == 0, capsys.readouterr()
        project = fw.load_project(out)
        r = fw.run_training(project, (x[:3], y[:3]), (x[3:], y[3:]))
        assert [e for e, _, _ in r.curve] == [0, 1] and r.curve[1][1] > 0
        assert set(r.params) == {p["name"] for p in project.manifest["params"]}
        assert r.peak_sram_bytes == project.plan.peak_sram_bytes
