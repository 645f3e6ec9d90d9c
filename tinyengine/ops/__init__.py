"""Operator definitions: one module per op family, one :class:`OpDef` per op.

An OpDef is the single place that knows an operator:

* ``check(node, graph)``     validate attrs, shapes, dtypes and quantization; raise
                              :class:`UnsupportedError` naming the node and what is supported.
* ``prepare(node, graph)``   compute everything the kernels need at compile time
                              (multipliers, shifts, clamp bounds, folded offsets, padding) and
                              return it as a dict.  The result is stored in ``node.params``.
                              Values are Python ints/floats/bools/strings or NumPy arrays; arrays
                              are emitted by codegen as ``static const`` C arrays.
* ``prepare_context(node, graph)``  what prepare() reads beyond its node, the node's tensors and
                              the target (a graph-wide choice), as a hashable tuple; () by default.
* ``reference(node, graph, inputs)``  NumPy execution, bit-exact with TFLite Micro; takes the
                              list of input arrays (None for omitted optional inputs; constants are
                              passed too) and returns the list of output arrays.
* ``scratch_bytes(node, graph)``  bytes of scratch memory the C kernel needs (0 if none).  The
                              same formula is used by the planner and documented in the kernel.
                              A kernel that runs faster with scratch it can do without puts
                              ``optional_scratch_bytes`` in the params; the compiler sets
                              ``params["scratch_bytes"]`` to it where that does not raise the arena
                              (memory.grant_optional_scratch).
* ``channel_params(node)``   the per-channel table (accumulator starts, multipliers, shift bytes)
                              of a DSP conv / depthwise / fully connected kernel, which the
                              compiler may store bit-packed (ops/chanpack.py); see scratch_total.
* ``template``               path (under codegen_templates/) of the jinja2 template that renders
                              the C call.  The template sees:
                                ``node``   the Node (``node.name``, ``node.op``, ``node.attrs``)
                                ``p``      node.params with every array replaced by its C symbol
                                ``inp``    list of C pointer expressions of the inputs (constants are
                                           the names of their const arrays; None if omitted)
                                ``out``    list of C pointer expressions of the outputs
                                ``scratch`` C pointer expression (int8_t *) of the scratch area or
                                           "NULL"
                                ``tin`` / ``tout``  the input / output Tensor objects
                              and must render complete C statements (usually one call).
* ``kernels``                C source files (under firmware/kernels/) the template calls; codegen
                              copies only these into the generated project.  An op whose prepare()
                              picks a kernel per node (e.g. a SIMD one when the target has the DSP
                              extension) overrides ``kernel_sources(node)`` / ``template_for(node)``.
* target                     ``graph.meta["target"]`` (a :class:`Target`) says what the board's core
                              offers; prepare() decides kernels from it, the C has no #ifdefs.
* ``inplace``                whether output 0 may share input 0's memory (elementwise ops).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnsupportedError  # noqa: F401  (defined with the other user-facing errors)


class OpDef:
    name: str = ""
    template: str = ""
    kernels: tuple = ()
    inplace: bool = False

    def check(self, node, graph) -> None:  # pragma: no cover - overridden
        pass

    def prepare(self, node, graph) -> dict:
        return {}

    def prepare_context(self, node, graph) -> tuple:
        """What prepare() reads beyond the node, its tensors and the target, as a hashable tuple
        (passes.node_key): nothing for most ops."""
        return ()

    def reference(self, node, graph, inputs: list) -> list:  # pragma: no cover - overridden
        raise NotImplementedError

    def scratch_bytes(self, node, graph) -> int:
        return 0

    def kernel_sources(self, node) -> tuple:
        """Kernel .c files this node's call needs (default: the op's ``kernels``)."""
        return self.kernels

    def template_for(self, node) -> str:
        """Call template of this node (default: the op's ``template``)."""
        return self.template

    def macs(self, node, graph) -> int:
        """Multiply-accumulates; only CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED count."""
        return 0

    def channel_params(self, node):
        """The per-output-channel table the node's kernel reads, as a chanpack.ChannelParams,
        or None.  The compiler may store it bit-packed and have it expanded into the node's
        scratch before the call (memory.grant_compact_params; codegen binds the pointers)."""
        return None


@dataclass(frozen=True)
class Target:
    """What the code generator may assume about the core that runs the kernels."""
    name: str = "host"          # board name
    cpu: str = ""               # "cortex-m7", "cortex-m4", "" for the host
    dsp: bool = False           # Armv7E-M DSP extension (SMLAD, SXTB16, ...)


def target_of(graph) -> Target:
    return graph.meta.get("target") or Target()


REGISTRY: dict = {}


def register(cls):
    """Class decorator: instantiate and register an OpDef under its ``name``."""
    inst = cls()
    REGISTRY[inst.name] = inst
    return cls


def get(op: str) -> OpDef:
    _load_all()
    return REGISTRY[op]


def supported_ops() -> list:
    _load_all()
    return sorted(REGISTRY)


_LOADED = False


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


def scratch_total(node, graph) -> int:
    """Scratch bytes of a node's call: its kernel's (``scratch_bytes``) plus, when its
    per-channel parameters are stored bit-packed, the table they expand to (placed first)."""
    return get(node.op).scratch_bytes(node, graph) + int(node.params.get("rq_table_bytes", 0))


def whole_table_in_every_call(node, pieces):
    """node's per-channel table (chanpack.ChannelParams) where the kernel calls that run it in
    pieces (``pieces``: the piece nodes, each with its own prepared params: a patch's, a fused
    pair's row) all read that same whole table, so that one copy expanded before the first
    call serves them all; else None."""
    import numpy as np

    from .chanpack import table

    opdef = get(node.op)
    cp = opdef.channel_params(node)
    if cp is None:
        return None
    whole = table(cp)
    for piece in pieces:
        c = opdef.channel_params(piece)
        if c is None or c.names != cp.names or c.group != cp.group or \
                not np.array_equal(table(c), whole):
            return None
    return cp


def unsupported(node, what: str) -> UnsupportedError:
    return UnsupportedError(f"node '{node.name}' ({node.op}): {what}")


