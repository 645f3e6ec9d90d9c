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
"""
from __future__ import annotations

import numpy as np

import tinyengine as te

from . import reference

UPDATE_KERNELS = ("te_sgd_update_s8", "te_sgd_update_s32")
ACCUMULATE = "TE_GRAD_ACCUMULATE_F32"   # the sum of two gradient contributions (te_binary_f32 add)


def op_name(kernel: str) -> str:
    """The kernel's name in capitals, ending in _F32 (tinyengine's mark of an op outside the
    int8 inference set: the frontends and the op coverage tests leave these out)."""
    name = kernel.upper()
    return name if name.endswith("_F32") else f"{name}_F32"


class _Backward(te.OpDef):
    kernel_name = ""

    @property
    def kernels(self):
        return (f"{self.kernel_name}.c",)

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
    inplace = True

    def check(self, node, graph) -> None:
        a, b = (graph.tensors[t] for t in node.inputs)
        y = graph.tensors[node.outputs[0]]
        if not (a.shape == b.shape == y.shape and a.dtype == b.dtype == y.dtype == "float32"):
            raise te.UnsupportedError(f"node '{node.name}' ({node.op}): adds two float32 "
                                      f"gradients of one shape")

    def reference(self, node, graph, inputs: list) -> list:
        return [np.asarray(inputs[0], np.float32) + np.asarray(inputs[1], np.float32)]
