"""The training firmware: a training graph compiled to a C project, built and run.

    compile_training(model, classes=N, board=..., out_dir=...) -> TrainProject
    run_training(project, train=(x, y), test=(x, y)) -> TrainResult

The project (tinyengine's layout: kernels/, runtime/, platform/, Makefile, te_project.json)
holds:
  model.c / model.h  (codegen_templates/train/) te_train_step(input, label): the forward, the
                     loss, the pruned backward, each SGD update right after its gradient, then
                     the trained layers' acc_init refolded (te_fold_acc_init_s32); te_predict:
                     the forward only, the argmax of the logits; the learning-rate schedule
                     (constant, or cosine over the run's steps) with its own cosine (no libm)
  weights.c / .h     the frozen constants in Flash; the trained parameters, each trained
                     layer's acc_init and the momentum buffers as SRAM arrays (te.generate's
                     state: the C start-up copies their initial values from Flash)
  runtime/main.c     firmware/train_main.c: streams train.bin / test.bin, prints TT_EPOCH
                     lines, instructions, stack, writes params.bin
  training.json      what the firmware was compiled from and what params.bin holds
Built with -ffp-contract=off (the host and a Cortex-M compute the same floats); `make`,
`make run` (QEMU, or the host executable), `make flash` as inference projects;
`make run EPOCHS=n` trains n epochs.

The arena is the plan tinytrain.memory reports (memory.plan_arena: one te.plan_memory of the
training graph).  A conv or depthwise layer whose bias alone trains keeps its board's DSP
kernel, its channel table in SRAM, the bias written into it after each update (FOLD_BIAS,
te_fold_bias_s32; the firmware stops with TE_ERROR should a bias leave the range the kernel
computes exactly); every other trained layer runs the portable forward kernel
(graph.trained_params), which reads its weights and acc_init from SRAM.

Deviation from the contract (notes/train-contract.md): none in the interface; additions:
run_training(..., epochs=n) overrides the compiled-in count (make run EPOCHS=n),
progress=callable(done, total) is called on each TT_PROGRESS line (the firmware prints one
after every training step and test prediction: total = epochs x train + (epochs + 1) x
test); TrainResult.stdout (without the TT_PROGRESS lines); load_project(dir) reads a
project compiled earlier (training.json; .tg None); records() / read_params() give
the .bin files' bytes and params.bin's arrays.  peak_sram_bytes on a board is the linked
image's static SRAM (arena, trained state, the runner's own statics) plus the measured
stack, as tinyengine counts an inference's; on the host (no such image) the plan's figure.
TrainError (a TinyEngineError and ValueError) names a bad option or data set.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import tinyengine as te

from . import __version__
from . import graph as tgm
from . import memory
from . import ops as bops
from .grad_rules import weight_layout

TRAIN_MAIN = Path(te.KERNEL_DIR).parent / "train_main.c"
MANIFEST = "training.json"
SCHEDULES = ("constant", "cosine")
DEFAULT_TIMEOUT_S = 600


class TrainError(te.TinyEngineError, ValueError):
    """A training option or data set that does not fit the model (names what and why)."""


@dataclass
class TrainProject:
    dir: Path
    plan: memory.TrainPlan
    tg: tgm.TrainingGraph
    input_quant: tuple            # (scale, zero point) of the model's int8 input
    input_shape: tuple            # NHWC, batch 1
    manifest: dict = field(default_factory=dict)


@dataclass
class TrainResult:
    curve: list                   # [(epoch, mean train loss or None for 0, test accuracy)]
    step_instructions: int | None
    predict_instructions: int | None
    stack_bytes: int | None
    peak_sram_bytes: int
    flash_bytes: int
    params: dict                  # tensor name -> array after training (then velocity:<name>)
    stdout: str = ""
    layers: dict = field(default_factory=dict)   # profile=True: operator index -> count (step 1)


# -- compile ----------------------------------------------------------------------------------
def _check_epochs(epochs) -> None:
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise TrainError(f"--epochs must be an integer >= 1, got {epochs!r}")


def _check_options(epochs, lr, momentum, lr_schedule) -> None:
    _check_epochs(epochs)
    if not lr > 0 or not np.isfinite(lr):
        raise TrainError(f"--lr must be a number > 0, got {lr!r}")
    if not 0 <= momentum < 1:
        raise TrainError(f"--momentum must be in [0, 1), got {momentum!r}")
    if lr_schedule not in SCHEDULES:
        raise TrainError(f"learning-rate schedule {lr_schedule!r} (supported: "
                         f"{', '.join(SCHEDULES)})")


def _forward(model, board: str, classes: int, seed: int, calibration):
    """The forward with the new head (tgm.forward_graph), from a file or a loaded te.Graph."""
    opts = te.CompileOptions(board=board, calibration=calibration)
    if isinstance(model, te.Graph):
        g = te.set_target(model, board)
        return te.run_passes(tgm.replace_head(g, classes, seed), opts)
    return tgm.forward_graph(model, board, classes, seed, opts)


def _check_io(fwd, classes: int) -> tuple:
    """(input tensor, logits tensor) of a forward one sample at a time can train."""
    if len(fwd.inputs) != 1:
        raise TrainError(f"{fwd.name}: the model has {len(fwd.inputs)} inputs (training "
                         f"firmware: one int8 input)")
    x = fwd.tensors[fwd.inputs[0]]
    if x.dtype != "int8" or x.quant is None:
        raise TrainError(f"{fwd.name}: input '{x.name}' is {x.dtype} (training firmware: an "
                         f"int8 input, the host quantizes the data)")
    if x.shape[0] != 1:
        raise TrainError(f"{fwd.name}: input '{x.name}' has batch {x.shape[0]} (training "
                         f"firmware: batch 1)")
    logits = fwd.tensors[fwd.outputs[0]]
    if logits.size != classes:
        raise TrainError(f"{fwd.name}: the head gives {logits.size} logits per sample, not "
                         f"{classes} (batch 1 only)")
    return x, logits


def _param_order(tg) -> list:
    """The trained parameter tensors in forward order, weights before bias."""
    order = []
    for node in tg.forward.nodes:
        order += [t for t in node.inputs[1:3] if t is not None and t in tg.params]
    return order


# a DSP forward kernel's weights array (its params key) and the input gradients that read it
PACKED = {**{k: "w_packed" for k in bops.CONV_DSP}, bops.DW_DSP: "filter_dsp"}
GRAD_INPUT = ("te_conv_2d_grad_input_f32", "te_depthwise_conv_2d_grad_input_f32")


def with_refolds(tg, acc_symbol: dict):
    """The training graph with a FOLD_ACC_INIT node after each trained layer's last update:
    its acc_init (C array acc_symbol[layer]) refolded from its bias and weights, so that the
    next forward sees them (acc_init wraps modulo 2^32 as the compile-time fold does); a
    layer on a DSP kernel (its bias alone trains) gets a FOLD_BIAS node instead, writing
    the bias into that kernel's table."""
    g = tg.graph
    last = {}
    for i, node in enumerate(g.nodes):
        if node.attrs.get("kernel") in bops.UPDATE_KERNELS:
            last[tg.params[node.inputs[0]][0]] = i
    fwd = {n.name: n for n in g.nodes}
    after = {}
    for layer, i in last.items():
        node = fwd[layer]
        x, w = (g.tensors[t] for t in node.inputs[:2])
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        kernel = node.params.get("kernel")
        if kernel in tgm.FAST_KERNELS:           # bias only: into the DSP kernel's table
            after[i] = te.Node(bops.FOLD_BIAS, f"{layer}/te_fold_bias_s32", [bias], [],
                               {"table": acc_symbol[layer], "kernel": kernel,
                                "weights": w.name, "input_offset": -int(x.quant.zp)})
            continue
        after[i] = te.Node(bops.FOLD_ACC_INIT, f"{layer}/te_fold_acc_init_s32", [bias, w.name], [],
                           {"acc_init": acc_symbol[layer], "input_offset": -int(x.quant.zp),
                            "layout": weight_layout(node.op, w.shape)})
    nodes = []
    for i, node in enumerate(g.nodes):
        nodes.append(node)
        if i in after:
            nodes.append(after[i])
    graph = te.Graph(g.tensors, nodes, list(g.inputs), list(g.outputs), g.name, g.meta)
    graph.validate()
    # a trained layer's frozen weights on a DSP kernel exist once, packed as they are (no
    # folds: ACC_INIT_VARIES; te.generate's te_n<i>_<key> array of its forward node i): its
    # input gradient reads them so
    packed = {n.inputs[1]: f"te_n{i}_{PACKED[n.params.get('kernel')]}"
              for i, n in enumerate(nodes)
              if n.params.get("kernel") in PACKED and n.attrs.get(te.ACC_INIT_VARIES)}
    for node in nodes:
        if node.op in bops.OPDEFS:
            bops.check(node, graph)
            node.params = bops.OPDEFS[node.op].prepare(node, graph)
            if node.attrs.get("kernel") in GRAD_INPUT and node.inputs[1] in packed:
                node.params["packed_filter"] = packed[node.inputs[1]]
    return tgm.TrainingGraph(graph, tg.forward, tg.targets, tg.params, tg.velocities, tg.grads)


def _describe(scheme, epochs, lr, momentum, lr_schedule, qas) -> str:
    what = ("full backprop" if scheme.full else
            f"biases of the last {scheme.bias_last} layers, weights "
            f"{', '.join(f'{k}:{r}' for k, r in scheme.weights) or 'none'}")
    return (f"{scheme.source}: {what}; SGD lr {lr} ({lr_schedule}), momentum {momentum}, "
            f"QAS {'on' if qas else 'off'}, {epochs} epoch{'' if epochs == 1 else 's'}")


def _stamp(model, board: str, describe: str) -> dict:
    if isinstance(model, te.Graph):
        name, sha = model.name, ""
    else:
        name, sha = Path(model).name, hashlib.sha256(Path(model).read_bytes()).hexdigest()
    return {"version": te.__version__, "model": name, "model_sha256": sha, "board": board,
            "options": describe}


def _install(tmp: Path, out: Path) -> None:
    """Move the finished project in tmp to out (replacing an earlier project there)."""
    if out.exists():
        if not out.is_dir():
            raise TrainError(f"{out} exists and is not a folder")
        if any(out.iterdir()) and not (out / "te_project.json").exists():
            raise TrainError(f"{out} is not empty and holds no TinyEngine project; choose "
                             f"another -o")
        shutil.rmtree(out)
    tmp.rename(out)


def compile_training(model, *, classes: int, scheme=None, board: str = "stm32f746", out_dir,
                     epochs: int = 1, lr: float = 0.05, momentum: float = 0.0,
                     lr_schedule: str = "constant", qas: bool = True, seed: int = 0,
                     calibration=None, profile: bool = False) -> TrainProject:
    """The training firmware of a model (a .tflite / .onnx path or a loaded te.Graph) for
    `classes` classes under a scheme (None: memory.default_scheme) on a board, written to
    out_dir (module docstring).  profile: te_train_step marks the end of each operator and
    the runner prints its count in the first step (TrainResult.layers, profile_rows).
    te.FitError where it does not fit the board's SRAM (bytes
    needed and available); nothing is written then."""
    b = te.get_board(board)
    _check_options(epochs, lr, momentum, lr_schedule)
    fwd = _forward(model, b.name, classes, seed, calibration)
    x, logits = _check_io(fwd, classes)
    optim = dict(lr=lr, momentum=momentum, qas=qas)
    scheme = scheme or memory.default_scheme(fwd, b.name, **optim)
    tg = tgm.build(fwd, scheme, **optim)

    params = _param_order(tg)
    velocities = [f"velocity:{p}" for p in params if f"velocity:{p}" in tg.velocities]
    layers = list(tg.targets)
    nodes = {n.name: n for n in tg.graph.nodes}
    state = params + [(layer, tgm.table_key(nodes[layer])) for layer in layers] + velocities
    acc_symbol = {layer: f"te_state_{len(params) + k}" for k, layer in enumerate(layers)}
    tg = with_refolds(tg, acc_symbol)
    plan, arena = memory.plan_arena(tg, b.name)
    source = model.name if isinstance(model, te.Graph) else str(model)
    memory.check_fits(plan, f"{source}: the training graph")

    describe = _describe(scheme, epochs, lr, momentum, lr_schedule, qas)
    stamp = _stamp(model, b.name, describe)
    g = tg.graph
    nodes = {n.name: i for i, n in enumerate(g.nodes)}
    head = nodes[next(n.name for n in fwd.nodes if n.outputs[0] == fwd.outputs[0])]
    backward_ops = set(bops.OPDEFS)
    states = [{"name": t, "symbol": f"te_state_{state.index(t)}", "bytes": g.tensors[t].nbytes}
              for t in params + velocities]

    def ptr(t):      # the arena location of a tensor, as model.c.j2 declares the arena
        return f"(({g.tensors[t].c_type} *)(te_arena + {arena.offsets[t]}))"

    tt = dict(version=__version__, describe=describe, input_bytes=x.nbytes, classes=classes,
              states=states, schedule=lr_schedule, lr_c=bops.c_float(lr), input=ptr(x.name),
              label=ptr("label"), loss=ptr("loss"), logits=ptr(logits.name),
              forward_calls={i for i, n in enumerate(g.nodes)
                             if i <= head and n.op not in backward_ops})
    gen = te.generate(g, arena, stamp, profile=profile, state=state, context={"tt": tt},
                      templates={"model.c": "train/model.c.j2", "model.h": "train/model.h.j2"})
    manifest = {
        "tinytrain_version": __version__, "model": source, "board": b.name, "classes": classes,
        "input": {"name": x.name, "shape": list(x.shape), "scale": float(x.quant.s),
                  "zero_point": int(x.quant.zp)},
        "scheme": {"bias_last": scheme.bias_last, "weights": [list(w) for w in scheme.weights],
                   "full": scheme.full, "source": scheme.source},
        "trained": {layer: {"bias": t.bias, "channels": None if t.channels is None
                            else list(t.channels)} for layer, t in tg.targets.items()},
        "optimizer": {"lr": lr, "momentum": momentum, "lr_schedule": lr_schedule, "qas": qas,
                      "epochs": epochs},
        "params": [{"name": t, "dtype": g.tensors[t].dtype, "shape": list(g.tensors[t].shape)}
                   for t in params],
        "velocities": [{"name": t, "dtype": "float32", "shape": list(g.tensors[t].shape)}
                       for t in velocities],
        "memory": plan.as_dict(),
        "backward_nodes": len(g.nodes) - len(fwd.nodes),
    }
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        te.emit_project(tmp, b, gen.files, gen.kernel_files, stamp, main=TRAIN_MAIN,
                        cflags=["-ffp-contract=off", "-DTT_EPOCHS=$(EPOCHS)"]
                        + (["-DTT_PROFILE"] if profile else []),
                        make_vars=[("EPOCHS", epochs, "training epochs of `make run` "
                                    "(make run EPOCHS=n)")],
                        run_io="trains on train.bin, tests on test.bin, writes params.bin")
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _install(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return TrainProject(out, plan, tg, (float(x.quant.s), int(x.quant.zp)), tuple(x.shape),
                        manifest)


def load_project(out_dir) -> TrainProject:
    """The TrainProject of a folder compile_training wrote (from its training.json; .tg is
    None): for run_training on a project compiled earlier, e.g. by `tinytrain compile`."""
    path = Path(out_dir) / MANIFEST
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError):
        raise TrainError(f"{out_dir}: no training project (no readable {MANIFEST}; write one "
                         f"with tinytrain compile)") from None
    fields = memory.TrainPlan.__dataclass_fields__
    plan = memory.TrainPlan(**{k: v for k, v in m["memory"].items() if k in fields})
    x = m["input"]
    return TrainProject(Path(out_dir), plan, None, (x["scale"], x["zero_point"]),
                        tuple(x["shape"]), m)


# -- run --------------------------------------------------------------------------------------
def records(project: TrainProject, x, y) -> bytes:
    """train.bin / test.bin bytes of samples x (float NHWC, quantized with the input's scale
    and zero point, or int8 already) and labels y."""
    x, y = np.asarray(x), np.asarray(y)
    shape = tuple(project.input_shape[1:])
    if x.ndim == len(shape):
        x = x[None]
    if tuple(x.shape[1:]) != shape:
        raise TrainError(f"data of shape {tuple(x.shape[1:])} per sample does not match the "
                         f"model's input {shape} (NHWC)")
    if len(y) != len(x):
        raise TrainError(f"{len(x)} samples but {len(y)} labels")
    classes = project.manifest["classes"]
    if len(y) and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= classes):
        raise TrainError(f"labels must be integers in [0, {classes}), got "
                         f"{y.min() if len(y) else ''}..{y.max() if len(y) else ''}")
    if x.dtype != np.int8:
        s, zp = project.input_quant
        x = np.clip(np.rint(x.astype(np.float64) / s) + zp, -128, 127).astype(np.int8)
    rec = np.concatenate([x.reshape(len(x), -1).view(np.uint8),
                          np.asarray(y, np.uint8)[:, None]], axis=1)
    return rec.tobytes()


def _lines(stdout: str, key: str) -> list:
    return [ln.split()[1:] for ln in stdout.splitlines() if ln.startswith(key + " ")]


def _parse_int(stdout: str, key: str) -> int | None:
    hits = _lines(stdout, key)
    return int(hits[-1][0]) if hits else None


def read_params(project: TrainProject, raw: bytes) -> dict:
    """params.bin -> {tensor name: array} (parameters, then velocity:<name> buffers)."""
    out, pos = {}, 0
    for p in project.manifest["params"] + project.manifest["velocities"]:
        dt = np.dtype(p["dtype"])
        n = int(np.prod(p["shape"])) * dt.itemsize
        out[p["name"]] = np.frombuffer(raw[pos:pos + n], dt).reshape(p["shape"]).copy()
        pos += n
    if pos != len(raw):
        raise te.RunError(f"params.bin holds {len(raw)} bytes, training.json describes {pos}")
    return out


def _run(d: Path, extra: list, timeout_s: int, progress) -> tuple:
    """(exit status, output without TT_PROGRESS lines) of `make run`, each TT_PROGRESS line
    passed to progress(done, total) as it comes; killed after timeout_s (status None)."""
    proc = subprocess.Popen(["make", "-s", "run", f"TIMEOUT={int(timeout_s)}", *extra], cwd=d,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    timer = threading.Timer(timeout_s + 30, lambda: os.killpg(proc.pid, signal.SIGKILL))
    timer.start()
    lines = []
    try:
        for line in proc.stdout:
            if line.startswith("TT_PROGRESS "):
                if progress is not None:
                    done, total = line.split()[1:3]
                    progress(int(done), int(total))
            else:
                lines.append(line)
        code = proc.wait()
    finally:
        timer.cancel()
    return (None if code == -signal.SIGKILL else code), "".join(lines)


def run_training(project: TrainProject, train, test, *, timeout_s: int = DEFAULT_TIMEOUT_S,
                 epochs: int | None = None, progress=None) -> TrainResult:
    """Build the project and train on the board (QEMU) or the host: train / test are (x, y)
    (see records); epochs overrides the compiled-in count; progress(done, total), if given,
    is called after each training step and each test prediction (for a progress bar)."""
    d = Path(project.dir)
    if not len(train[1]) or not len(test[1]):
        raise TrainError("the training and the test set need at least one sample each")
    if epochs is not None:
        _check_epochs(epochs)
    (d / "train.bin").write_bytes(records(project, *train))
    (d / "test.bin").write_bytes(records(project, *test))
    (d / "params.bin").unlink(missing_ok=True)
    extra = [] if epochs is None else [f"EPOCHS={epochs}"]
    te.make_project(d)
    code, out = _run(d, extra, timeout_s, progress)
    errors = re.findall(r"^TE_ERROR (.*)$", out, re.M)
    if errors:
        raise te.RunError(f"training firmware error on {project.plan.board}: {errors[0]}")
    if code != 0 or "~~~TE DONE~~~" not in out:
        timed_out = code is None or re.search(r"Error 124|Error 137", out)
        why = f"timed out after {timeout_s} s" if timed_out else f"exit status {code}"
        tail = " | ".join(out.strip().splitlines()[-3:])
        raise te.RunError(f"training firmware on {project.plan.board} failed ({why}): {tail}")
    curve = [(int(e), None if int(e) == 0 else int(loss) / 1e6, int(c) / max(int(n), 1))
             for e, loss, c, n in _lines(out, "TT_EPOCH")]
    stack = _parse_int(out, "TE_STACK_BYTES")
    sizes = te.project_size(d)
    if project.plan.board == "host" or stack is None:
        peak = project.plan.peak_sram_bytes
    else:
        peak = sizes["sram_static_bytes"] + stack
    return TrainResult(curve, _parse_int(out, "TT_STEP_INSTRUCTIONS"),
                       _parse_int(out, "TT_PREDICT_INSTRUCTIONS"), stack, peak,
                       sizes["flash_bytes"], read_params(project, (d / "params.bin").read_bytes()),
                       out, {int(i): int(n) for i, n in _lines(out, "TT_LAYER")})


def profile_rows(project: TrainProject, result: TrainResult) -> list:
    """(index, node name, op or kernel, 'forward' / 'backward', count) of each operator of
    te_train_step in a profiled run (compile_training(profile=True), project.tg needed)."""
    g = project.tg.graph
    forward = {n.name for n in project.tg.forward.nodes}

    def kernel(n):        # a fold's attrs name the forward kernel whose table it writes
        if n.op in (bops.FOLD_BIAS, bops.FOLD_ACC_INIT, bops.ACCUMULATE):
            return bops.OPDEFS[n.op].kernels[0][:-2]
        return n.attrs.get("kernel") or n.params.get("kernel") or n.op
    return [(i, n.name, kernel(n), "forward" if n.name in forward else "backward",
             result.layers[i]) for i, n in enumerate(g.nodes) if i in result.layers]

