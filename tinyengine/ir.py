"""The TinyEngine intermediate representation.

A :class:`Graph` is a list of :class:`Node` in execution (topological) order over
named :class:`Tensor` objects.  Every tensor carries its shape, dtype and, for
quantized tensors, its :class:`QuantParams`.  Activations are NHWC; constant
tensors keep TFLite's layouts (CONV_2D weights OHWI, DEPTHWISE_CONV_2D weights
1HW(C*M), FULLY_CONNECTED weights [out, in]).

The IR is deliberately open to what comes after inference: dtypes include float32
and int32 so that training graphs (gradients) live in the same structure, and node
``attrs`` are free-form dictionaries validated by each op's definition.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .errors import IRError  # noqa: F401  (defined with the other user-facing errors)

DTYPES = {
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
    "float32": np.float32,
}

C_TYPES = {
    "int8": "int8_t",
    "uint8": "uint8_t",
    "int16": "int16_t",
    "int32": "int32_t",
    "int64": "int64_t",
    "float32": "float",
}


# the most elements one tensor may hold: far more than any board's memory, small enough that
# byte offsets and sizes stay within int32 in the generated C
MAX_TENSOR_ELEMENTS = 2**31 - 1
# activation scales outside this range are damage, not quantization (no trained model comes near)
ACTIVATION_SCALE_RANGE = (1e-30, 1e30)
ZERO_POINT_RANGE = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767),
                    "int32": (-2**31, 2**31 - 1)}


@dataclass
class QuantParams:
    """Affine quantization: real = scale * (q - zero_point).

    ``scale`` and ``zero_point`` are 1-D arrays; length 1 means per-tensor, longer
    means per-channel along ``axis``.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    axis: Optional[int] = None

    def __post_init__(self) -> None:
        self.scale = np.atleast_1d(np.asarray(self.scale, dtype=np.float64))
        self.zero_point = np.atleast_1d(np.asarray(self.zero_point, dtype=np.int64))

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1

    @property
    def s(self) -> float:
        """The per-tensor scale (error if per-channel)."""
        if self.per_channel:
            raise IRError("per-channel quantization where a per-tensor one is required")
        return float(self.scale[0])

    @property
    def zp(self) -> int:
        """The per-tensor zero point."""
        return int(self.zero_point[0])

    def _usable_per_tensor(self, tensor: "Tensor") -> bool:
        """problem()'s checks of one scale and one zero point passed, on Python numbers (the
        common case, checked on every tensor after every pass)."""
        s, z = self.scale.item(), self.zero_point.item()
        lo, hi = ACTIVATION_SCALE_RANGE
        z_lo, z_hi = ZERO_POINT_RANGE.get(tensor.dtype, (z, z))
        return math.isfinite(s) and (tensor.is_const or lo <= s <= hi) and z_lo <= z <= z_hi

    def problem(self, tensor: "Tensor") -> Optional[str]:
        """What makes these parameters unusable for ``tensor`` (None if nothing): scales that
        are not finite numbers, activation scales that are not positive or absurdly small or
        large (a constant's per-channel scales may be zero or negative: TFLite Micro takes
        them), zero points outside the tensor's integer range, mismatched lengths, a
        per-channel axis outside the shape or with a different number of channels."""
        scale, zp = self.scale, self.zero_point
        if scale.size == 1 and zp.size == 1 and self._usable_per_tensor(tensor):
            return None
        if scale.size == 0:
            return "quantization has no scale"
        bad = scale[~np.isfinite(scale)]
        if bad.size:
            return f"quantization scale {bad[0]} is not a finite number"
        if not tensor.is_const:
            lo, hi = ACTIVATION_SCALE_RANGE
            worst = scale[(scale < lo) | (scale > hi)]
            if worst.size:
                return (f"quantization scale {worst[0]:g} is not usable (an activation's scale must "
                        f"be between {lo:g} and {hi:g})")
        if zp.size != scale.size and zp.size != 1 and np.unique(zp).size != 1:
            return f"{scale.size} quantization scales but {zp.size} different zero points"
        if tensor.dtype in ZERO_POINT_RANGE:
            lo, hi = ZERO_POINT_RANGE[tensor.dtype]
            out = zp[(zp < lo) | (zp > hi)]
            if out.size:
                return f"zero point {out[0]} is outside the {tensor.dtype} range [{lo}, {hi}]"
        if self.per_channel:
            rank = len(tensor.shape)
            if self.axis is None or not 0 <= self.axis < rank:
                return (f"per-channel quantization axis {self.axis} is outside the tensor's "
                        f"{rank} dimensions")
            if tensor.shape[self.axis] != scale.size:
                return (f"{scale.size} per-channel scales for {tensor.shape[self.axis]} channels "
                        f"(axis {self.axis} of shape {tensor.shape})")
        return None


@dataclass
class Tensor:
    name: str
    shape: tuple
    dtype: str
    quant: Optional[QuantParams] = None
    data: Optional[np.ndarray] = None  # set for constants (weights, biases, shape vectors)

    def __post_init__(self) -> None:
        self.shape = tuple(int(d) for d in self.shape)
        if self.dtype not in DTYPES:
            raise IRError(f"tensor '{self.name}': unsupported dtype {self.dtype}")

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def itemsize(self) -> int:
        return np.dtype(DTYPES[self.dtype]).itemsize

    @property
    def nbytes(self) -> int:
        return self.size * self.itemsize

    @property
    def np_dtype(self):
        return DTYPES[self.dtype]

    @property
    def c_type(self) -> str:
        return C_TYPES[self.dtype]


@dataclass
class Node:
    op: str                      # upper-case TFLite builtin name, e.g. "CONV_2D"
    name: str                    # unique, human readable (used in errors and generated comments)
    inputs: list                 # tensor names; None for an omitted optional input
    outputs: list
    attrs: dict = field(default_factory=dict)   # op options, normalized by the frontend
    params: dict = field(default_factory=dict)  # filled by ops' prepare(): multipliers, shifts, ...

    def __repr__(self) -> str:
        return f"Node({self.op} '{self.name}')"


@dataclass
class Graph:
    tensors: dict                # name -> Tensor
    nodes: list                  # execution order
    inputs: list                 # tensor names
    outputs: list
    name: str = "model"
    meta: dict = field(default_factory=dict)

    def tensor(self, name: str) -> Tensor:
        return self.tensors[name]

    def producers(self) -> dict:
        return {t: n for n in self.nodes for t in n.outputs}

    def consumers(self) -> dict:
        out: dict = {}
        for n in self.nodes:
            for t in n.inputs:
                if t is not None:
                    out.setdefault(t, []).append(n)
        return out

    def activations(self) -> list:
        """Names of non-constant tensors in first-use order (graph inputs first)."""
        seen, order = set(), []
        for t in self.inputs:
            if t not in seen:
                seen.add(t)
                order.append(t)
        for n in self.nodes:
            for t in list(n.inputs) + list(n.outputs):
                if t is not None and t not in seen and not self.tensors[t].is_const:
                    seen.add(t)
                    order.append(t)
        return order

    def validate(self) -> None:
        """Check the invariants every pass must keep; raise IRError naming the culprit."""
        names = set()
        for n in self.nodes:
            if n.name in names:
                raise IRError(f"duplicate node name '{n.name}'")
            names.add(n.name)
        available = set(self.inputs) | {k for k, t in self.tensors.items() if t.is_const}
        for t in self.inputs:
            if t not in self.tensors:
                raise IRError(f"graph input '{t}' is not a tensor")
        written = set()
        for n in self.nodes:
            for t in n.inputs:
                if t is None:
                    continue
                if t not in self.tensors:
                    raise IRError(f"node '{n.name}' ({n.op}): unknown input tensor '{t}'")
                if t not in available:
                    raise IRError(f"node '{n.name}' ({n.op}): input '{t}' is used before it is produced")
            for t in n.outputs:
                if t not in self.tensors:
                    raise IRError(f"node '{n.name}' ({n.op}): unknown output tensor '{t}'")
                if t in written or t in self.inputs or self.tensors[t].is_const:
                    raise IRError(f"node '{n.name}' ({n.op}): tensor '{t}' is written twice")
                written.add(t)
                available.add(t)
        for t in self.outputs:
            if t not in available:
                raise IRError(f"graph output '{t}' is never produced")
        for t in self.tensors.values():
            if any(d <= 0 for d in t.shape):
                raise IRError(f"tensor '{t.name}' has a non-positive dimension {t.shape}")
            if t.size > MAX_TENSOR_ELEMENTS:
                raise IRError(f"tensor '{t.name}' has shape {t.shape}: {t.size} elements, more than "
                              f"{MAX_TENSOR_ELEMENTS} (larger than any supported board's memory)")
            if t.is_const and t.dtype == "float32" and not np.isfinite(t.data).all():
                raise IRError(f"constant '{t.name}' holds a value that is not a finite number")
            why = t.quant.problem(t) if t.quant is not None else None
            if why:
                raise IRError(f"tensor '{t.name}': {why}")
            if t.is_const and t.data.size != t.size:
                raise IRError(f"constant '{t.name}': data has {t.data.size} elements, shape says {t.size}")


def toposort(nodes: list, graph_inputs: list, tensors: dict) -> list:
    """Order nodes so that every input is produced before use (stable w.r.t. file order)."""
    producer = {}
    for n in nodes:
        for t in n.outputs:
            producer[t] = n
    done: set = set()
    order: list = []
    state: dict = {}
    for root in nodes:
        if id(root) in done:
            continue
        stack = [(root, 0)]
        while stack:
            node, i = stack.pop()
            if i == 0:
                if state.get(id(node)) == 1:
                    raise IRError(f"the graph has a cycle through node '{node.name}'")
                if id(node) in done:
                    continue
                state[id(node)] = 1
            deps = [producer[t] for t in node.inputs if t is not None and t in producer]
            if i < len(deps):
                stack.append((node, i + 1))
                dep = deps[i]
                if id(dep) not in done:
                    if state.get(id(dep)) == 1:
                        raise IRError(f"the graph has a cycle through node '{dep.name}'")
                    stack.append((dep, 0))
            else:
                state[id(node)] = 2
                done.add(id(node))
                order.append(node)
    return order
