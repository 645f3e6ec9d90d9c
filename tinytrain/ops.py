"""The backward's operators: one tinyengine OpDef per training kernel, registered with
te.register_op, so that a training graph is planned, validated and run by the reference like
any other graph.

A backward node's op is its C kernel's name in capitals, ending in _F32 (TE_CONV_2D_GRAD_INPUT_F32,
TE_SGD_UPDATE_S8_F32: the int8 inference set leaves _F32 ops out); its attrs
hold the kernel (`kernel`), the kernel's constant arguments (`args`, as tinytrain.reference
takes them), which inputs are scalars (`scalars`: an activation's scale or zero point) and,
for an SGD update, the state it rewrites in place (`updates`: the parameter, its momentum
buffer).  Updates write no tensor of the graph: trained parameters and momentum buffers are
state outside the arena (counted apart in the memory plan); the reference leaves them
unchanged.  Gradients are float32, masks uint8, the loss one float32.

Codegen: each op has a call template (codegen_templates/train/ops/<kernel>.c.j2) and a
prepare() that gives it the kernel's dimensions (from the tensors' shapes and the step's
args); an update reads the learning rate of the step from the firmware's `te_lr` (the
schedule, tinytrain/firmware.py).  FOLD_ACC_INIT (te_fold_acc_init_s32) refolds a trained
layer's forward accumulator start after its updates; FOLD_BIAS (te_fold_bias_s32) writes a
bias trained with frozen weights into its layer's DSP kernel table.
"""
from __future__ import annotations

import numpy as np

import tinyengine as te

from . import reference

UPDATE_KERNELS = ("te_sgd_update_s8", "te_sgd_update_s32")
ACCUMULATE = "TE_GRAD_ACCUMULATE_F32"   # the sum of two gradient contributions (te_binary_f32 add)
FOLD_ACC_INIT = "TE_FOLD_ACC_INIT_S32_F32"   # a trained layer's acc_init after its updates
FOLD_BIAS = "TE_FOLD_BIAS_S32_F32"      # a trained bias into a DSP kernel's table (weights frozen)
# the kernels a kernel calls itself (its .c includes their headers)
KERNEL_HELPERS = {"te_softmax_cross_entropy_grad_f32": ("te_exp_f32.c", "te_log_f32.c")}
LR = "te_lr"                             # the firmware's learning rate of the current step


def op_name(kernel: str) -> str:
    """The kernel's name in capitals, ending in _F32 (tinyengine's mark of an op outside the
    int8 inference set: the frontends and the op coverage tests leave these out)."""
    name = kernel.upper()
    return name if name.endswith("_F32") else f"{name}_F32"


def c_float(x) -> str:
    """A float32 literal of C that reads back as the same float32."""
    t = "%.9g" % float(np.float32(x))
    return (t if any(c in t for c in ".en") else t + ".0") + "f"


def _i32(values) -> np.ndarray:
    return np.asarray(values, np.int32)


def _dims5(shape) -> np.ndarray:
    return _i32([1] * (5 - len(shape)) + list(shape))


def _channels(channels, n_all: int) -> dict:
    """A channel selection as the kernels take it: an int32 array (a const of the firmware)
    and its count, or NULL for all n_all."""
    if channels is None:
        return {"channels": "0", "n_channels": n_all}
    return {"channels": _i32(channels), "n_channels": len(channels)}


def _window(a) -> dict:
    return dict(stride_h=a["stride"][0], stride_w=a["stride"][1], pad_top=a["pad"][0],
                pad_left=a["pad"][1])


def _index_space(shape, dims) -> tuple:
    """(shape, strides) of the given dims of a row-major shape; one dim of size 1 for none."""
    strides = [int(np.prod(shape[d + 1:])) for d in range(len(shape))]
    return ([int(shape[d]) for d in dims], [strides[d] for d in dims]) if dims else ([1], [0])


def _prepare(kernel: str, s: list, o: list, a: dict) -> dict:
    """The template parameters of a backward kernel's call: s / o the input / output shapes
    (None for an absent input), a the step's args."""
    if kernel in ("te_clamp_grad_mask_s8", "te_clamp_grad_input_f32", "te_reshape_grad_input_f32"):
        return {"n": int(np.prod(s[0])), **{k: a[k] for k in ("act_min", "act_max") if k in a}}
    if kernel in ("te_conv_2d_grad_input_f32", "te_depthwise_conv_2d_grad_input_f32"):
        b, oh, ow, oc = s[0]
        _, ih, iw, ic = o[0]
        kh, kw = s[1][1:3]
        return dict(batches=b, out_h=oh, out_w=ow, out_c=oc, in_h=ih, in_w=iw, in_c=ic, k_h=kh,
                    k_w=kw, depth_multiplier=a.get("depth_multiplier", 1), **_window(a))
    if kernel in ("te_conv_2d_grad_weight_f32", "te_depthwise_conv_2d_grad_weight_f32"):
        b, oh, ow, oc = s[0]
        _, ih, iw, ic = s[1]
        return dict(batches=b, out_h=oh, out_w=ow, out_c=oc, in_h=ih, in_w=iw, in_c=ic,
                    k_h=a["k_hw"][0],
                    k_w=a["k_hw"][1], depth_multiplier=a.get("depth_multiplier", 1),
                    **_channels(a["channels"], oc), **_window(a))
    if kernel == "te_conv_2d_grad_bias_f32":
        return {"channels": s[0][-1], "rows": int(np.prod(s[0])) // s[0][-1]}
    if kernel == "te_fully_connected_grad_input_f32":
        out_f, in_f = s[1]
        return dict(batches=int(np.prod(s[0])) // out_f, in_features=in_f, out_features=out_f)
    if kernel == "te_fully_connected_grad_weight_f32":
        out_f = s[0][-1]
        batches = int(np.prod(s[0])) // out_f
        return dict(batches=batches, in_features=int(np.prod(s[1])) // batches,
                    out_features=out_f, **_channels(a["channels"], out_f))
    if kernel == "te_avg_pool_2d_grad_input_f32":
        b, oh, ow, c = s[0]
        return dict(batches=b, out_h=oh, out_w=ow, channels=c, in_h=o[0][1], in_w=o[0][2],
                    filter_h=a["filter_hw"][0], filter_w=a["filter_hw"][1], **_window(a))
    if kernel == "te_mean_grad_input_f32":
        shape, axes = a["in_shape"], sorted(a["axes"])
        ks, kst = _index_space(shape, [d for d in range(len(shape)) if d not in axes])
        rs, rst = _index_space(shape, axes)
        return dict(keep_ndim=len(ks), keep_shape=_i32(ks), keep_strides=_i32(kst),
                    red_ndim=len(rs), red_shape=_i32(rs), red_strides=_i32(rst),
                    count=int(np.prod(rs)))
    if kernel == "te_pad_grad_input_f32":
        k = 5 - len(a["pad_before"])
        return dict(in_dims=_dims5(o[0]), out_dims=_dims5(s[0]),
                    pad_before=_i32([0] * k + list(a["pad_before"])))
    if kernel == "te_transpose_grad_input_f32":
        k = 5 - len(a["perm"])
        return dict(in_dims=_dims5(o[0]), perm=_i32(list(range(k)) + [p + k for p in a["perm"]]))
    if kernel == "te_softmax_cross_entropy_grad_f32":
        classes = s[0][-1]
        return dict(batches=int(np.prod(s[0])) // classes, classes=classes)
    if kernel == "te_sgd_update_s8":
        outer, n_all, inner = a["layout"]
        return dict(outer=outer, n_all=n_all, inner=inner, lr=LR, momentum=c_float(a["momentum"]),
                    **_channels(a["channels"], n_all))
    if kernel == "te_sgd_update_s32":
        return dict(n=int(np.prod(s[0])), lr=LR, momentum=c_float(a["momentum"]))
    raise KeyError(f"no call parameters for kernel {kernel}")


class _Backward(te.OpDef):
    kernel_name = ""

    @property
    def kernels(self):
        return (f"{self.kernel_name}.c",) + KERNEL_HELPERS.get(self.kernel_name, ())

    @property
    def template(self):
        return f"train/ops/{self.kernel_name}.c.j2"

    def prepare(self, node, graph) -> dict:
        shapes = [None if t is None else graph.tensors[t].shape for t in node.inputs]
        return _prepare(self.kernel_name, shapes, [graph.tensors[t].shape for t in node.outputs],
                        node.attrs.get("args", {}))

    def check(self, node, graph) -> None:
        for t in node.outputs:
            dt = graph.tensors[t].dtype
            if dt not in ("float32", "uint8"):
                raise te.UnsupportedError(f"node '{node.name}' ({node.op}): output '{t}' is {dt} "
                                          f"(backward values are float32, masks uint8)")

    def reference(self, node, graph, inputs: list) -> list:
        scalars = set(node.attrs.get("scalars", ()))
        args = [None if x is None else (np.asarray(x).reshape(-1)[0] if i in scalars else x)
                for i, x in enumerate(inputs)]
        if node.attrs["kernel"] == "te_softmax_cross_entropy_grad_f32":
            n = graph.tensors[node.outputs[1]].shape[-1]
            args[0] = np.asarray(args[0]).reshape(-1, n)
        out = reference.KERNELS[node.attrs["kernel"]](*args, **node.attrs.get("args", {}))
        if node.attrs["kernel"] in UPDATE_KERNELS:
            return []                    # state outside the graph (module docstring)
        outs = out if len(node.outputs) > 1 else (out,)
        return [np.asarray(y).astype(graph.tensors[t].np_dtype).reshape(graph.tensors[t].shape)
                for y, t in zip(outs, node.outputs)]


OPDEFS: dict = {}    # op name -> OpDef instance of every backward op


def check(node, graph) -> None:
    """The OpDef check of a backward node (forward nodes are checked by te.run_passes)."""
    if node.op in OPDEFS:
        OPDEFS[node.op].check(node, graph)


def _register(cls):
    te.register_op(cls)
    OPDEFS[cls.name] = cls()
    return cls


for _k in reference.KERNELS:
    _register(type(f"Op_{_k}", (_Backward,), {"name": op_name(_k), "kernel_name": _k}))


@_register
class GradAccumulate(te.OpDef):
    """grad = a + b: a tensor read by two ops receives the sum of their gradients."""
    name = ACCUMULATE
    kernels = ("te_binary_f32.c",)
    template = "train/ops/grad_accumulate.c.j2"
    inplace = True

    def prepare(self, node, graph) -> dict:
        return {"size": graph.tensors[node.outputs[0]].size}

    def check(self, node, graph) -> None:
        a, b = (graph.tensors[t] for t in node.inputs)
        y = graph.tensors[node.outputs[0]]
        if not (a.shape == b.shape == y.shape and a.dtype == b.dtype == y.dtype == "float32"):
            raise te.UnsupportedError(f"node '{node.name}' ({node.op}): adds two float32 "
                                      f"gradients of one shape")

    def reference(self, node, graph, inputs: list) -> list:
        return [np.asarray(inputs[0], np.float32) + np.asarray(inputs[1], np.float32)]


@_register
class FoldAccInit(te.OpDef):
    """A trained layer's forward accumulator start refolded after its updates: inputs the
    layer's bias (None without one) and weights, attrs `acc_init` (the C array it rewrites:
    the firmware's state), `layout` (outer, channels, inner) and `input_offset`.  State
    outside the graph, as the updates: the reference leaves it alone."""
    name = FOLD_ACC_INIT
    kernels = ("te_fold_acc_init_s32.c",)
    template = "train/ops/te_fold_acc_init_s32.c.j2"

    def check(self, node, graph) -> None:
        if node.outputs or len(node.inputs) != 2:
            raise te.UnsupportedError(f"node '{node.name}' ({node.op}): reads a bias (or None) "
                                      f"and weights and writes state only")

    def prepare(self, node, graph) -> dict:
        outer, n_all, inner = node.attrs["layout"]
        return dict(acc_init=node.attrs["acc_init"], outer=outer, n_all=n_all, inner=inner,
                    input_offset=node.attrs["input_offset"])

    def reference(self, node, graph, inputs: list) -> list:
        return []


DW_DSP = "te_depthwise_conv_2d_s8_dsp"
CONV_DSP = ("te_conv_2d_1x1_s8_dsp", "te_conv_2d_s8_dsp")


@_register
class FoldBias(te.OpDef):
    """A layer whose bias alone trains (weights frozen) and whose forward runs a DSP kernel
    on a table in SRAM (tinyengine's ACC_INIT_VARIES prepare): its bias written into that
    table after the update (te_fold_bias_s32).  Input the bias; attrs `table` (the C array:
    the firmware's state), `kernel` (the layer's forward kernel), `weights` (the frozen
    weights' tensor: the offsets and limits are computed from it at compile time) and
    `input_offset`.  The firmware stops with TE_ERROR if the bias leaves the range the kernel
    computes exactly.  State outside the graph: the reference leaves it alone."""
    name = FOLD_BIAS
    kernels = ("te_fold_bias_s32.c",)
    template = "train/ops/te_fold_bias_s32.c.j2"

    def check(self, node, graph) -> None:
        if node.outputs or len(node.inputs) != 1 or node.inputs[0] is None or \
                node.attrs.get("kernel") not in (DW_DSP,) + CONV_DSP:
            raise te.UnsupportedError(f"node '{node.name}' ({node.op}): reads a bias, writes "
                                      f"the table of a DSP conv or depthwise kernel")

    def prepare(self, node, graph) -> dict:
        w = graph.tensors[node.attrs["weights"]]
        w64 = w.data.astype(np.int64)
        if node.attrs["kernel"] == DW_DSP:          # channels last, the kernel adds the offset
            wabs = np.abs(w64).reshape(-1, w.shape[-1]).sum(axis=0)
            return dict(table=node.attrs["table"], n=int(w.shape[-1]), group=9,
                        limit=_limit(wabs, 255))
        w2d = w64.reshape(w.shape[0], -1)
        offset = (int(node.attrs["input_offset"]) * w2d.sum(axis=1)) % (1 << 32)
        return dict(table=node.attrs["table"], n=int(w.shape[0]), group=4,
                    offset=_i32(np.where(offset >= 1 << 31, offset - (1 << 32), offset)),
                    limit=_limit(np.abs(w2d).sum(axis=1), 128))

    def reference(self, node, graph, inputs: list) -> list:
        return []


def _limit(wabs, x_max: int) -> int:
    """te_fold_bias_s32's limit: 2^30 - 1 - x_max * the largest sum|w| of a channel, >= 0."""
    return int(max((1 << 30) - 1 - x_max * int(np.max(wabs)), 0))
