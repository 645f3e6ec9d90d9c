"""Every bad input of issue 13 through the `tinytrain` command line: one line on stderr
(`tinytrain: error: ...`, naming the file, option, layer, node or op and what is supported),
exit code 2, never a traceback; and the default scheme of every shared model fits the board."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.tflite_builder import ModelBuilder
from tinytrain import cli

ROOT = Path(__file__).resolve().parents[1]


class Net:
    """An int8 TFLite model written layer by layer (NHWC, batch 1), shapes tracked."""

    def __init__(self, shape):
        self.mb = ModelBuilder()
        self.rng = np.random.default_rng(0)
        self.shapes = {}
        self.x = self.act(shape)

    def act(self, shape, scale=0.05, zero_point=-3):
        t = self.mb.tensor(f"t{len(self.shapes)}", shape, scale=scale, zero_point=zero_point)
        self.shapes[t] = tuple(shape)
        return t

    def _weights(self, shape, axis):
        n = shape[axis]
        w = self.mb.const(f"w{len(self.shapes)}", self.rng.integers(-127, 128, shape), "int8",
                          scale=self.rng.uniform(0.005, 0.01, n),
                          zero_point=np.zeros(n, np.int64), quantized_dimension=axis)
        b = self.mb.const(f"b{len(self.shapes)}", self.rng.integers(-99, 99, n), "int32",
                          scale=np.full(n, 2e-4), zero_point=np.zeros(n, np.int64))
        return w, b

    def conv(self, x, cout, k=1, stride=1, depthwise=False, act="RELU"):
        _, h, w, cin = self.shapes[x]
        y = self.act((1, -(-h // stride), -(-w // stride), cout))
        if depthwise:
            self.mb.op("DEPTHWISE_CONV_2D", [x, *self._weights((1, k, k, cout), 3)], [y],
                       padding="SAME", stride_w=stride, stride_h=stride,
                       depth_multiplier=cout // cin, fused_activation_function=act)
        else:
            self.mb.op("CONV_2D", [x, *self._weights((cout, k, k, cin), 0)], [y],
                       padding="SAME", stride_w=stride, stride_h=stride,
                       fused_activation_function=act)
        return y

    def op(self, op, x, shape, *consts, **options):
        y = self.act(shape)
        self.mb.op(op, [x, *consts], [y], **options)
        return y

    def pool(self, x):
        _, h, w, c = self.shapes[x]
        return self.op("AVERAGE_POOL_2D", x, (1, 1, 1, c), padding="VALID", stride_w=1,
                       stride_h=1, filter_width=w, filter_height=h)

    def flatten(self, x):
        n = int(np.prod(self.shapes[x]))
        return self.op("RESHAPE", x, (1, n), self.mb.const(f"s{len(self.shapes)}",
                                                           np.array([1, n], np.int32)))

    def fc(self, x, n):
        y = self.act((1, n))
        self.mb.op("FULLY_CONNECTED", [x, *self._weights((n, self.shapes[x][-1]), 0)], [y])
        return y

    def save(self, path, outputs):
        self.mb.inputs([self.x])
        self.mb.outputs(outputs)
        path.write_bytes(self.mb.build())
        return str(path)


def classifier(path, size=8, channels=8, max_pool=True):
    """conv 3x3/2 -> depthwise 3x3 -> MAX_POOL_2D 2x2 (no gradient rule) -> 1x1 conv -> global
    average pool -> reshape -> fully connected (the head)."""
    n = Net((1, size, size, 3))
    c = n.conv(n.x, channels, k=3, stride=2)
    d = n.conv(c, channels, k=3, depthwise=True)
    s = size // 4
    if max_pool:
        d = n.op("MAX_POOL_2D", d, (1, s, s, channels), padding="VALID", stride_w=2,
                 stride_h=2, filter_width=2, filter_height=2)
    p = n.conv(d, channels)
    return n.save(path, [n.fc(n.flatten(n.pool(p)), 5)])


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return classifier(tmp_path_factory.mktemp("errors") / "small.tflite")


def one_line_error(capsys, argv) -> str:
    assert cli.main([str(a) for a in argv]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tinytrain: error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    return err[0]


def plan(model, *args):
    return ["plan", str(model), "--classes", "3", "--board", "host", *map(str, args)]


LAYERS = "(trainable layers: 0:conv_2d_0, 1:depthwise_conv_2d_1, 2:conv_2d_3, 3:head)"


@pytest.mark.parametrize("args, message", [
    (["--weights", "conv_9:0.5"], f"--weights: layer 'conv_9' does not exist {LAYERS}"),
    (["--weights", "7:0.5"], "--weights: layer 7 does not exist (trainable layers: 0:"),
    (["--weights", "2:0"], "--weights: the ratio of layer 2 must be in (0, 1], got 0.0"),
    (["--weights", "2:1.5"], "--weights: the ratio of layer 2 must be in (0, 1], got 1.5"),
    (["--weights", "2:-0.2"], "the ratio of layer 2 must be in (0, 1], got -0.2"),
    (["--weights", "2:nan"], "the ratio of layer 2 must be in (0, 1], got nan"),
    (["--weights", "2:half"], "--weights: the ratio in '2:half' is not a number"),
    (["--weights", "conv_2d_3"], "--weights: 'conv_2d_3' is not LAYER:RATIO"),
    (["--bias-last", "9"], "bias_last 9 is more than the 4 trainable layers"),
    (["--bias-last", "-1"], "--bias-last: bias_last must be an integer >= 0, got -1"),
    (["--classes", "1"], "--classes must be an integer >= 2, got 1"),
    (["--classes", "0"], "--classes must be an integer >= 2, got 0"),
    (["--board", "nosuch"], "unknown board 'nosuch' (boards: stm32f746,"),
    (["--lr", "-1"], "SGD needs lr >= 0 and momentum in [0, 1)"),
    (["--momentum", "1"], "SGD needs lr >= 0 and momentum in [0, 1)"),
])
def test_bad_options(model, capsys, args, message):
    assert message in one_line_error(capsys, plan(model, *args))


@pytest.mark.parametrize("text, message", [
    ("{", "not JSON (Expecting property name enclosed in double quotes at line 1)"),
    ("[1, 2]", "a scheme is a JSON object with bias_last, weights, full"),
    ('{"bias": 2}', "unknown key 'bias' (keys: bias_last, weights, full)"),
    ('{"bias_last": "2"}', "bias_last must be an integer >= 0, got '2'"),
    ('{"bias_last": true}', "bias_last must be an integer >= 0, got True"),
    ('{"weights": [1]}', "'weights' must map layer names or indices to ratios"),
    ('{"weights": {"conv_2d_3": 2}}', "the ratio of layer conv_2d_3 must be in (0, 1], got 2"),
    ('{"weights": {"conv_2d_3": "a"}}', "the ratio of layer conv_2d_3 must be in (0, 1], got 'a'"),
    ('{"weights": {"conv_9": 0.5}}', f"layer 'conv_9' does not exist {LAYERS}"),
    ('{"full": "yes"}', "'full' must be true or false, got 'yes'"),
])
def test_malformed_scheme_file_names_file_and_key(model, tmp_path, capsys, text, message):
    f = tmp_path / "s.json"
    f.write_text(text)
    err = one_line_error(capsys, plan(model, "--scheme", f))
    assert f"error: {f}: " in err and message in err, err


def test_scheme_file_and_flags(model, tmp_path, capsys):
    f = tmp_path / "s.json"
    assert "cannot read the scheme (No such file or directory)" in \
        one_line_error(capsys, plan(model, "--scheme", f))
    f.write_text(json.dumps({"bias_last": 2, "weights": {"conv_2d_3": 0.5}}))
    assert "exclude each other" in one_line_error(capsys, plan(model, "--scheme", f, "--full"))
    assert cli.main(plan(model, "--scheme", f)) == 0
    out = capsys.readouterr().out
    assert "conv_2d_3 (bias + 4 weight channels), head (bias + 3 weight channels)" in out, out


def test_op_without_gradient_rule_names_node_op_and_the_ops_with_rules(model, capsys):
    """Training a layer below the MAX_POOL_2D: its node and op, the ops that have a rule."""
    err = one_line_error(capsys, plan(model, "--weights", "1:1"))
    assert "node 'max_pool_2d_2' (MAX_POOL_2D) lies between the loss and trained layer " \
           "'depthwise_conv_2d_1' and has no gradient rule" in err, err
    assert "(ops with one: ADD, AVERAGE_POOL_2D, CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED," in err
    # above it, training works; the default scheme stops above it too
    assert cli.main(plan(model, "--weights", "2:1", "--bias-last", "2")) == 0
    capsys.readouterr()
    assert cli.main(plan(model)) == 0
    trained = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("trained"))
    assert "conv_2d_3 (bias" in trained and "depthwise" not in trained, trained


def test_scheme_that_does_not_fit_the_board(tmp_path, capsys):
    """Full backprop of a 48x48x16 network on the 128 KB stm32f411: the bytes needed (with
    their breakdown) and the board's; the same network fits with the default scheme."""
    path = classifier(tmp_path / "big.tflite", size=96, channels=16, max_pool=False)
    err = one_line_error(capsys, ["plan", path, "--classes", "3", "--board", "stm32f411",
                                  "--full"])
    needed = int(err.split(" needs ")[1].split()[0])
    assert needed > 131072 and "stm32f411 has 131072" in err, err
    assert cli.main(["plan", path, "--classes", "3", "--board", "stm32f411"]) == 0
    out = capsys.readouterr().out
    assert int(out.split("peak SRAM")[1].split()[0]) <= 131072


def test_bad_model_files(model, tmp_path, capsys):
    data = Path(model).read_bytes()
    cases = {
        "missing.tflite": (None, "missing.tflite: cannot read the model file (No such file"),
        "truncated.tflite": (data[:len(data) // 3], "not a valid TFLite model"),
        "zeros.tflite": (bytes(64), "zeros.tflite: not a TFLite model (missing the 'TFL3' file"),
        "text.onnx": (b"this is not ONNX", "text.onnx: not a valid ONNX model"),
        "empty.onnx": (b"", "empty.onnx: not a valid ONNX model"),
        "model.npy": (data, "unknown model format '.npy' (supported: .tflite, .onnx)"),
    }
    for name, (content, message) in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        err = one_line_error(capsys, plan(str(tmp_path / name)))
        assert message in err, (name, err)
    assert "unknown model format" in one_line_error(capsys, plan(str(tmp_path)))


def test_bad_model_in_a_process_exits_2(tmp_path):
    """The console script's exit code and stderr, in a process of its own."""
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"TFL3" * 10)
    r = subprocess.run([sys.executable, "-m", "tinytrain.cli", *plan(str(bad))], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"tinytrain: error: {bad}:"), r.stderr


def no_weights(path):
    n = Net((1, 4, 4, 3))
    return n.save(path, [n.pool(n.x)])


def depthwise_last(path):
    n = Net((1, 4, 4, 3))
    return n.save(path, [n.flatten(n.pool(n.conv(n.conv(n.x, 4), 8, k=3, depthwise=True)))])


def conv3x3_last(path):
    n = Net((1, 4, 4, 3))
    return n.save(path, [n.flatten(n.pool(n.conv(n.x, 4, k=3)))])


def map_not_pooled(path):
    n = Net((1, 4, 4, 3))
    return n.save(path, [n.conv(n.x, 4)])


def head_into_add(path):
    """The FC's output added to another branch: not a classifier's logits."""
    n = Net((1, 4, 4, 3))
    f = n.flatten(n.pool(n.x))
    y = n.fc(f, 3)
    return n.save(path, [n.op("ADD", y, (1, 3), f)])


def two_outputs(path):
    n = Net((1, 4, 4, 3))
    p = n.pool(n.x)
    return n.save(path, [n.fc(n.flatten(p), 3), p])


@pytest.mark.parametrize("build, message", [
    (no_weights, "no classifier head to replace: no FULLY_CONNECTED or 1x1 CONV_2D node "
                 "(ops: AVERAGE_POOL_2D)"),
    (depthwise_last, "no classifier head to replace: the last layer with weights, node "
                     "'depthwise_conv_2d_1' (DEPTHWISE_CONV_2D) with [1, 3, 3, 8] weights, is "
                     "neither a FULLY_CONNECTED nor a 1x1 CONV_2D"),
    (conv3x3_last, "node 'conv_2d_0' (CONV_2D) with [4, 3, 3, 3] weights, is neither"),
    (map_not_pooled, "the last layer with weights, node 'conv_2d_0' (CONV_2D), gives "
                     "[1, 4, 4, 4] values, not one vector of logits per sample"),
    (head_into_add, "node 'add_3' (ADD) comes after the last layer with weights node "
                    "'fully_connected_2' (FULLY_CONNECTED) and does not take its output alone"),
    (two_outputs, "no classifier head to replace: 2 outputs (a classifier has one"),
])
def test_model_without_a_classifier_head(tmp_path, capsys, build, message):
    path = build(tmp_path / f"{build.__name__}.tflite")
    err = one_line_error(capsys, plan(path))
    assert f"error: {path}: " in err and message in err, err


def test_pooled_map_of_a_1x1_conv_is_a_head(tmp_path, capsys):
    """A 1x1 conv over the map, then global average pooling, reshape and SOFTMAX: the pooling
    is kept for the new classes, the rest dropped."""
    from tinytrain import graph as tgm

    n = Net((1, 6, 6, 3))
    c = n.conv(n.conv(n.x, 8, k=3, stride=2), 5)
    f = n.flatten(n.pool(c))
    y = n.op("SOFTMAX", f, (1, 5), beta=1.0)
    n.mb._tensors[y].update(scale=1 / 256, zero_point=-128)
    path = n.save(tmp_path / "squeeze.tflite", [y])
    fwd = tgm.forward_graph(path, "host", 3)
    assert [x.op for x in fwd.nodes] == ["CONV_2D", "CONV_2D", "AVERAGE_POOL_2D"]
    assert fwd.tensors[fwd.nodes[1].outputs[0]].shape == (1, 3, 3, 3)
    assert fwd.tensors[fwd.outputs[0]].shape == (1, 1, 1, 3)
    assert cli.main(plan(path, "--full")) == 0


# -- the default scheme fits every board, on every shared model -------------------------------
SHARED = ["mlperf_tiny/ad01_int8.tflite", "mlperf_tiny/kws_ref_model.tflite",
          "mlperf_tiny/pretrainedResnet_quant.tflite", "mlperf_tiny/vww_96_int8.tflite",
          pytest.param("mcunet/mcunet-vww1.tflite", marks=pytest.mark.slow)]


@pytest.mark.parametrize("name", SHARED)
def test_default_scheme_fits_stm32f411(models_dir, name, capsys):
    """The default scheme on the smallest board the compiler knows (stm32f411, 128 KB): its
    plan (arena + trained parameters + stack) within the board's SRAM and 256 KB, and it
    trains more than the head."""
    from tinytrain import graph as tgm
    from tinytrain import memory

    fwd = tgm.forward_graph(str(models_dir / name), "stm32f411", 10)
    s = memory.default_scheme(fwd, "stm32f411")
    p = memory.plan(tgm.build(fwd, s), "stm32f411")
    with capsys.disabled():
        print(f"\n{name} default scheme on stm32f411: bias_last {s.bias_last}, weights "
              f"{list(s.weights)}: {p.breakdown()}")
    assert p.peak_sram_bytes <= min(p.sram_bytes, 256 * 1024) and p.fits
    assert s.bias_last >= 2


def test_weight_scale_too_small_for_qas(tmp_path, capsys):
    """A weight scale whose QAS factor 1/s^2 overflows float32 (a subnormal scale): the node,
    its scales and the way out; --no-qas trains it."""
    n = Net((1, 6, 6, 3))
    c = n.conv(n.x, 4, k=3, stride=2)
    path = n.save(tmp_path / "tiny_scale.tflite", [n.fc(n.flatten(n.pool(c)), 3)])
    mb = n.mb
    w = next(t for t in mb._tensors if t["data"] is not None and t["data"].ndim == 4)
    w["scale"] = np.array([1e-45, 0.01, 0.01, 0.01])
    Path(path).write_bytes(mb.build())
    err = one_line_error(capsys, plan(path, "--weights", "0:1"))
    assert "node 'conv_2d_0' (CONV_2D): its weights scales (weights 1.4e-45..0.01" in err, err
    assert "outside float32; train without QAS (--no-qas)" in err, err
    assert cli.main(plan(path, "--weights", "0:1", "--no-qas")) == 0


def test_mutated_models_plan_or_fail_cleanly(tmp_path, capsys):
    """Seeded byte flips, truncations and hostile numbers in a small model's metadata (the
    mutations of tests/test_hostile.py): `tinytrain plan` either plans or ends with one line
    and exit 2, never an internal error."""
    from tests.test_hostile import _metadata_offsets, mutate

    data = Path(classifier(tmp_path / "src.tflite", max_pool=False)).read_bytes()
    rng = np.random.default_rng(13)
    where = _metadata_offsets(data)
    codes = []
    for i in range(150):
        mutated, kind = mutate(data, rng, where)
        path = tmp_path / f"m{i}.tflite"
        path.write_bytes(mutated)
        rc = cli.main(plan(path, "--bias-last", "3", "--weights", "2:0.5"))
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert rc in (0, 2) and "internal error" not in captured.err, (i, kind, captured.err)
        assert rc == 0 or (len(lines) == 1 and lines[0].startswith("tinytrain: error: ")), \
            (i, kind, captured.err)
        codes.append(rc)
    assert codes.count(0) >= 10 and codes.count(2) >= 50, codes   # both outcomes reached


def test_shared_parameters_are_not_trained(tmp_path, capsys):
    """Two convs reading one weight and one bias tensor (weight tying): training them is
    refused naming both nodes; the layers after them train; full backprop says why not."""
    n = Net((1, 6, 6, 4))
    w = n.mb.const("w_tied", n.rng.integers(-127, 128, (4, 1, 1, 4)), "int8",
                   scale=np.full(4, 0.01), zero_point=np.zeros(4, np.int64))
    b = n.mb.const("b_tied", np.zeros(4), "int32", scale=np.full(4, 5e-4),
                   zero_point=np.zeros(4, np.int64))
    x = n.x
    for _ in range(2):
        y = n.act((1, 6, 6, 4))
        n.mb.op("CONV_2D", [x, w, b], [y], padding="SAME", stride_w=1, stride_h=1,
                fused_activation_function="RELU")
        x = y
    path = n.save(tmp_path / "tied.tflite", [n.fc(n.flatten(n.pool(x)), 3)])
    err = one_line_error(capsys, plan(path, "--bias-last", "2"))
    assert "node 'conv_2d_1' (CONV_2D): bias 'b_tied' is shared with node 'conv_2d_0'" in err
    assert cli.main(plan(path)) == 0
    out = capsys.readouterr().out
    assert "trained      head (bias + 3 weight channels)\n" in out
    assert "full backprop not possible: node 'conv_2d_0' (CONV_2D): weights 'w_tied' is shared" in out
