"""Stage 1: read an .onnx file into an OnnxGraph and fold its constants.

Constant, Shape (of a tensor whose shape is known) and any node whose inputs are all constants
become constants; Identity / Dropout are dropped.  Unsupported operators and dangling tensors
are refused here, before anything else looks at the graph.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import ModelError
from ...ops import UnsupportedError
from .model import SUPPORTED, OnnxGraph, OnnxNode, node_error


def read_model(model, label: str):
    """The onnx.ModelProto of a path or bytes, external weights loaded; ModelError if unreadable."""
    import onnx

    if isinstance(model, (bytes, bytearray, memoryview)):
        data = bytes(model)
        base = None
    else:
        try:
            data = Path(model).read_bytes()
        except OSError as e:
            raise ModelError(f"{label}: cannot read the model file ({e.strerror or e})") from None
        base = Path(model).parent
    try:
        mp = onnx.load_model_from_string(data)
    except Exception as e:
        raise ModelError(f"{label}: not a valid ONNX model (corrupt or truncated protobuf: "
                         f"{type(e).__name__})") from None
    if not mp.HasField("graph") or len(mp.graph.node) == 0 or len(mp.graph.output) == 0:
        raise ModelError(f"{label}: not a valid ONNX model (no graph, nodes or outputs; "
                         "corrupt or truncated file?)")
    from onnx import external_data_helper as ext

    if any(ext.uses_external_data(t) for t in mp.graph.initializer):
        if base is None:
            raise ModelError(f"{label}: the model keeps its weights in an external file; load it "
                             "from a path")
        try:
            ext.load_external_data_for_model(mp, str(base))
        except Exception as e:
            raise ModelError(f"{label}: cannot read the external weights next to the model "
                             f"({type(e).__name__}: {e})") from None
    return mp


def parse(mp, label: str) -> OnnxGraph:
    """The ModelProto as an OnnxGraph: inputs with fixed shapes, named nodes, constants folded."""
    import onnx
    from onnx import numpy_helper

    opset = next((o.version for o in mp.opset_import if o.domain in ("", "ai.onnx")), 13)
    g = OnnxGraph(mp, label, opset)
    pg = mp.graph
    for t in pg.initializer:
        g.consts[t.name] = numpy_helper.to_array(t)
    for t in pg.input:
        if t.name in g.consts:
            continue
        tt = t.type.tensor_type
        if tt.elem_type != onnx.TensorProto.FLOAT:
            raise UnsupportedError(f"input '{t.name}' is {onnx.TensorProto.DataType.Name(tt.elem_type)}; "
                                   "supported: float32 model inputs")
        dims = []
        for i, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(int(d.dim_value))
            elif i == 0:
                dims.append(1)               # dynamic batch -> 1
            else:
                raise UnsupportedError(f"input '{t.name}' has an unknown dimension {i} "
                                       f"('{d.dim_param}'); export the model with a fixed input size")
        g.inputs.append(t.name)
        g.shape[t.name] = tuple(dims)
    if not g.inputs:
        raise ModelError("the model declares no (non-constant) inputs")
    g.outputs = [o.name for o in pg.output]
    try:
        inferred = onnx.shape_inference.infer_shapes(mp)
        vi = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    except Exception:
        vi = {}
    counts: dict = {}
    for i, n in enumerate(pg.node):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
        name = n.name or f"{n.op_type.lower()}_{i}"
        counts[name] = counts.get(name, 0) + 1
        if counts[name] > 1:
            name = f"{name}#{counts[name]}"
        g.nodes.append(OnnxNode(n.op_type, name, list(n.input), list(n.output), attrs, n.domain))
    check_supported(g)
    fold_constants(g, vi)
    check_dangling(g)
    return g


def check_supported(g: OnnxGraph) -> None:
    for n in g.nodes:
        if n.domain not in ("", "ai.onnx") or n.op not in SUPPORTED:
            op = n.op if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op}"
            raise UnsupportedError(f"operator {op} (node '{n.name}', output "
                                   f"'{n.outputs[0] if n.outputs else '?'}') is not supported; "
                                   f"supported ONNX operators: {', '.join(SUPPORTED)}")


def _constant_value(n: OnnxNode):
    from onnx import numpy_helper

    if "value" in n.attrs:
        return numpy_helper.to_array(n.attrs["value"])
    if "value_float" in n.attrs or "value_int" in n.attrs:
        return np.array(n.attrs.get("value_float", n.attrs.get("value_int")))
    if "value_floats" in n.attrs or "value_ints" in n.attrs:
        return np.array(n.attrs.get("value_floats", n.attrs.get("value_ints")))
    raise node_error(n, "unsupported Constant attribute "
                        f"({', '.join(n.attrs)}; supported: value, value_float(s), value_int(s))")


def fold_constants(g: OnnxGraph, vi: dict) -> None:
    """Constants computed at compile time (onnx's reference evaluator); Identity / Dropout
    become aliases.  `vi`: onnx shape inference's value_info by name (for Shape nodes)."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    keep = []
    alias: dict = {}
    for n in g.nodes:
        n.inputs = [alias.get(t, t) for t in n.inputs]
        if n.op == "Constant":
            g.consts[n.outputs[0]] = _constant_value(n)
            continue
        if n.op in ("Identity", "Dropout"):
            src = n.inputs[0]
            if src in g.consts:
                g.consts[n.outputs[0]] = g.consts[src]
            else:
                alias[n.outputs[0]] = src
            continue
        if n.op == "Shape" and n.inputs[0] not in g.consts:
            shp = g.shape.get(n.inputs[0])
            if shp is None and n.inputs[0] in vi:
                dims = vi[n.inputs[0]].type.tensor_type.shape.dim
                if all(d.HasField("dim_value") for d in dims):
                    shp = tuple(d.dim_value for d in dims)
            if shp is None:
                raise node_error(n, f"the shape of '{n.inputs[0]}' is not known at compile time")
            start, end = n.attrs.get("start", 0), n.attrs.get("end", None)
            g.consts[n.outputs[0]] = np.array(shp[start:end], dtype=np.int64)
            continue
        real = [t for t in n.inputs if t]
        if real and all(t in g.consts for t in real) and n.op not in ("QuantizeLinear", "DequantizeLinear"):
            ins = {t: g.consts[t] for t in real}
            node = onnx.helper.make_node(n.op, n.inputs, n.outputs, **n.attrs)
            outs = ReferenceEvaluator(node).run(None, ins)
            for o, v in zip(n.outputs, outs):
                g.consts[o] = np.asarray(v)
            continue
        keep.append(n)
    g.outputs = [alias.get(t, t) for t in g.outputs]
    g.nodes = keep


def check_dangling(g: OnnxGraph) -> None:
    """Every tensor read is produced; every graph output is computed (not a constant)."""
    produced = set(g.inputs) | set(g.consts)
    for n in g.nodes:
        produced.update(n.outputs)
    for n in g.nodes:
        for t in n.inputs:
            if t and t not in produced:
                raise ModelError(f"node '{n.name}' ({n.op}) reads '{t}', which is neither an input, "
                                 "an initializer nor a node's output (corrupt or truncated file?)")
    for t in g.outputs:
        if t not in produced:
            raise ModelError(f"graph output '{t}' is never produced (corrupt or truncated file?)")
    if any(t in g.consts for t in g.outputs):
        raise UnsupportedError("a graph output is a constant; nothing to compute")
