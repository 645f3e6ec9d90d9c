"""TFLite frontend: a .tflite flatbuffer -> TinyEngine IR.

Parsing uses the `tflite` package (generated accessors for the official schema).
Operator options are normalized into plain attrs (see tinyengine/ops/__init__.py);
the graph is sorted topologically and validated before it is returned.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tflite

from ..errors import ModelError
from ..ir import Graph, IRError, Node, QuantParams, Tensor, toposort
from ..ops import UnsupportedError, supported_ops
from ..ops.float_edge import FLOAT_EDGE_OPS

_TENSOR_TYPES = {
    tflite.TensorType.FLOAT32: "float32",
    tflite.TensorType.INT8: "int8",
    tflite.TensorType.UINT8: "uint8",
    tflite.TensorType.INT16: "int16",
    tflite.TensorType.INT32: "int32",
    tflite.TensorType.INT64: "int64",
}
_TYPE_NAMES = {v: k for k, v in vars(tflite.TensorType).items() if not k.startswith("_")}
_OP_NAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
_ACTIVATIONS = {v: k for k, v in vars(tflite.ActivationFunctionType).items() if not k.startswith("_")}
_PADDING = {tflite.Padding.SAME: "SAME", tflite.Padding.VALID: "VALID"}

# ops that only move or convert data: a float tensor around them does not make a float model
_FLOAT_OK = {"QUANTIZE", "DEQUANTIZE", "RESHAPE"}


def _options(op, cls_name: str):
    table = op.BuiltinOptions()
    if table is None:
        return None
    opts = getattr(tflite, cls_name)()
    opts.Init(table.Bytes, table.Pos)
    return opts


def _activation(code: int, node_name: str, opname: str) -> str:
    name = _ACTIVATIONS.get(code, str(code))
    if name not in ("NONE", "RELU", "RELU6", "RELU_N1_TO_1"):
        raise UnsupportedError(f"node '{node_name}' ({opname}): fused activation {name} is not "
                               "supported (supported: NONE, RELU, RELU6, RELU_N1_TO_1)")
    return name


def _padding(code: int, node_name: str, opname: str) -> str:
    if code not in _PADDING:
        raise ModelError(f"node '{node_name}' ({opname}): padding code {code} is not a TFLite "
                         "padding (SAME, VALID)")
    return _PADDING[code]


def _positive(pair: tuple, what: str, node_name: str, opname: str) -> tuple:
    if any(v <= 0 for v in pair):
        raise ModelError(f"node '{node_name}' ({opname}): {what} {pair} must be positive")
    return pair


def _attrs(opname: str, op, node_name: str) -> dict:
    """Normalized attributes of one operator."""
    if opname in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        cls = "Conv2DOptions" if opname == "CONV_2D" else "DepthwiseConv2DOptions"
        o = _options(op, cls)
        attrs = {
            "padding": _padding(o.Padding(), node_name, opname) if o else "SAME",
            "stride": _positive((o.StrideH(), o.StrideW()) if o else (1, 1), "stride", node_name, opname),
            "dilation": _positive((o.DilationHFactor(), o.DilationWFactor()) if o else (1, 1),
                                  "dilation", node_name, opname),
            "activation": _activation(o.FusedActivationFunction() if o else 0, node_name, opname),
        }
        if opname == "DEPTHWISE_CONV_2D":
            attrs["depth_multiplier"] = o.DepthMultiplier() if o else 1
        return attrs
    if opname == "FULLY_CONNECTED":
        o = _options(op, "FullyConnectedOptions")
        if o is not None and o.WeightsFormat() != 0:
            raise UnsupportedError(f"node '{node_name}' ({opname}): shuffled weights format is not "
                                   "supported (supported: DEFAULT)")
        return {"activation": _activation(o.FusedActivationFunction() if o else 0, node_name, opname),
                "keep_num_dims": bool(o.KeepNumDims()) if o else False}
    if opname in ("ADD", "MUL", "SUB"):
        o = _options(op, {"ADD": "AddOptions", "MUL": "MulOptions", "SUB": "SubOptions"}[opname])
        return {"activation": _activation(o.FusedActivationFunction() if o else 0, node_name, opname)}
    if opname in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        o = _options(op, "Pool2DOptions")
        if o is None:
            raise ModelError(f"node '{node_name}' ({opname}): the operator has no Pool2DOptions")
        return {"padding": _padding(o.Padding(), node_name, opname),
                "stride": _positive((o.StrideH(), o.StrideW()), "stride", node_name, opname),
                "filter": _positive((o.FilterHeight(), o.FilterWidth()), "filter size", node_name, opname),
                "activation": _activation(o.FusedActivationFunction(), node_name, opname)}
    if opname in ("MEAN", "SUM"):
        o = _options(op, "ReducerOptions")
        return {"keep_dims": bool(o.KeepDims()) if o else False}
    if opname == "SOFTMAX":
        o = _options(op, "SoftmaxOptions")
        return {"beta": float(o.Beta()) if o else 1.0}
    if opname == "LOG_SOFTMAX":
        return {}
    if opname == "CONCATENATION":
        o = _options(op, "ConcatenationOptions")
        return {"axis": o.Axis(), "activation": _activation(o.FusedActivationFunction(), node_name, opname)}
    if opname == "RESIZE_NEAREST_NEIGHBOR":
        o = _options(op, "ResizeNearestNeighborOptions")
        return {"align_corners": bool(o.AlignCorners()) if o else False,
                "half_pixel_centers": bool(o.HalfPixelCenters()) if o else False}
    return {}


def _check_float_edges(nodes: list, g_inputs: list, tensors: dict) -> None:
    """Float ops (<OP>_F32) run only at the model's edges: on values computed from the float
    inputs before any QUANTIZE (head), or on values a DEQUANTIZE gave (tail) that no int8 layer
    reads again.  A float op between int8 layers, or mixing both sides, is refused."""
    side = {t: "head" for t in g_inputs if tensors[t].dtype == "float32"}
    computed: set = set()         # tail tensors a float op computed (not a plain DEQUANTIZE)
    for n in nodes:
        live = [t for t in n.inputs if t is not None and not tensors[t].is_const]
        if n.op == "DEQUANTIZE":
            side.update({t: "tail" for t in n.outputs})
            continue
        if n.op == "QUANTIZE":
            if any(t in computed for t in live):
                raise UnsupportedError(
                    f"node '{n.name}' (QUANTIZE) quantizes a value computed in float32 after a "
                    "DEQUANTIZE: TinyEngine runs float ops only at the model's edges (before the "
                    "first QUANTIZE, after the last DEQUANTIZE)")
            continue
        if not (n.op.endswith("_F32") or any(tensors[t].dtype == "float32" for t in n.outputs)):
            continue
        sides = {side.get(t) for t in live}
        if None in sides or len(sides) > 1:
            raise UnsupportedError(
                f"node '{n.name}' ({n.op.removesuffix('_F32')}) computes in float32 between the "
                "int8 layers: TinyEngine runs float ops only at the model's edges (on the float "
                "inputs before their QUANTIZE, or after the last DEQUANTIZE)")
        where = sides.pop() if sides else "head"
        side.update({t: where for t in n.outputs})
        if where == "tail" and (n.op.endswith("_F32") or any(t in computed for t in live)):
            computed.update(n.outputs)


def _tensor_at(index_names: list, j, what: str, optional: bool = False):
    """The tensor name at index j of the subgraph (None for an omitted optional input, -1)."""
    j = int(j)
    if optional and j == -1:
        return None
    if not 0 <= j < len(index_names):
        raise ModelError(f"{what} refers to tensor {j}, the subgraph has {len(index_names)}")
    return index_names[j]


def read_bytes(path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ModelError(f"{path}: cannot read the model file ({e.strerror or e})") from None


def load(model, name: str | None = None) -> Graph:
    """Load a .tflite model (path or bytes) into a validated, topologically sorted Graph."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        data, label = bytes(model), name or "<model bytes>"
    else:
        data, label = read_bytes(model), str(model)
    try:
        return _parse(data, label)
    except (ModelError, UnsupportedError, IRError) as e:
        msg = str(e)
        raise type(e)(msg if msg.startswith(label) else f"{label}: {msg}") from None
    except Exception as e:  # a damaged flatbuffer fails anywhere inside the generated accessors
        raise ModelError(f"{label}: not a valid TFLite model (corrupt or truncated flatbuffer: "
                         f"{type(e).__name__})") from None


def _parse(data: bytes, label: str) -> Graph:
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError(f"{label}: not a TFLite model (missing the 'TFL3' file identifier)")
    model = tflite.Model.GetRootAsModel(data, 0)
    if model.SubgraphsLength() < 1:
        raise ModelError(f"{label}: the model has no subgraph")
    sg = model.Subgraphs(0)

    tensors: dict = {}
    bad_types: dict = {}  # tensor name -> schema type name TinyEngine has no dtype for
    index_names: list = []
    n_buffers = model.BuffersLength()
    file_names = [(sg.Tensors(i).Name() or b"").decode("utf-8", "replace")
                  for i in range(sg.TensorsLength())]
    taken = set(file_names)       # a duplicate's new name must not be one the file uses
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        tname = file_names[i] or f"tensor_{i}"
        if tname in tensors:
            k = i
            while f"{tname}#{k}" in tensors or f"{tname}#{k}" in taken:
                k += len(file_names)
            tname = f"{tname}#{k}"
        index_names.append(tname)
        ttype = t.Type()
        if ttype not in _TENSOR_TYPES:
            # keep unknown types as a marker; ops that use them are rejected below
            dtype = None
        else:
            dtype = _TENSOR_TYPES[ttype]
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        if any(d < -1 for d in shape):
            raise ModelError(f"tensor '{tname}' has shape {list(shape)}: dimensions must be "
                             "positive (or -1 for a dynamic batch)")
        shape = tuple(1 if d < 0 else d for d in shape)  # dynamic batch -> 1
        quant = None
        q = t.Quantization()
        if q is not None and q.ScaleLength() > 0:
            zp = (q.ZeroPointAsNumpy().astype(np.int64) if q.ZeroPointLength()
                  else np.zeros(1, np.int64))
            quant = QuantParams(q.ScaleAsNumpy().astype(np.float64), zp,
                                int(q.QuantizedDimension()) if q.ScaleLength() > 1 else None)
        data_arr = None
        if not 0 <= t.Buffer() < max(n_buffers, 1):
            raise ModelError(f"tensor '{tname}' refers to buffer {t.Buffer()}, the model has "
                             f"{n_buffers}")
        buf = model.Buffers(t.Buffer()) if t.Buffer() < n_buffers else None
        if buf is not None and buf.DataLength() > 0:
            if dtype is None:
                raise UnsupportedError(f"tensor '{tname}' has type {_TYPE_NAMES.get(ttype, ttype)}, "
                                       f"supported: {', '.join(_TENSOR_TYPES.values())}")
            raw = buf.DataAsNumpy().tobytes()
            item = np.dtype(dtype).itemsize
            if len(raw) % item:
                raise ModelError(f"constant tensor '{tname}' ({dtype}) has {len(raw)} bytes of data, "
                                 f"not a multiple of {item}")
            data_arr = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)
            if data_arr.size != int(np.prod(shape, dtype=np.int64)):
                raise ModelError(f"constant tensor '{tname}' holds {data_arr.size} values, "
                                 f"its shape {shape} needs {int(np.prod(shape))}")
            data_arr = data_arr.reshape(shape)
        tensors[tname] = Tensor(tname, shape, dtype or "int8", quant, data_arr)
        if dtype is None:
            bad_types[tname] = _TYPE_NAMES.get(ttype, str(ttype))

    supported = [o for o in supported_ops() if not o.endswith("_F32")]   # int8 ops
    nodes = []
    counts: dict = {}
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        if not 0 <= op.OpcodeIndex() < model.OperatorCodesLength():
            raise ModelError(f"operator {i} refers to operator code {op.OpcodeIndex()}, the model "
                             f"has {model.OperatorCodesLength()}")
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        opname = _OP_NAMES.get(builtin, f"BUILTIN_{builtin}")
        if opname == "CUSTOM":
            opname = f"CUSTOM({(code.CustomCode() or b'?').decode('utf-8', 'replace')})"
        counts[opname] = counts.get(opname, 0) + 1
        node_name = f"{opname.lower()}_{i}"
        where = f"node '{node_name}' ({opname})"
        inputs = [_tensor_at(index_names, j, f"{where} input {k}", optional=True)
                  for k, j in enumerate(op.InputsAsNumpy() if op.InputsLength() else [])]
        outputs = [_tensor_at(index_names, j, f"{where} output {k}")
                   for k, j in enumerate(op.OutputsAsNumpy() if op.OutputsLength() else [])]
        if not outputs:
            raise ModelError(f"{where} has no output")
        if not inputs or inputs[0] is None:     # no builtin op's first input is optional
            raise ModelError(f"{where} has no input 0")
        for tn in inputs + outputs:
            if tn in bad_types:
                raise UnsupportedError(f"node '{node_name}' ({opname}): tensor '{tn}' has type "
                                       f"{bad_types[tn]}, supported: int8, int32, float32 "
                                       "(at the model's edges)")
        ir_op = opname
        if opname not in _FLOAT_OK and any(
                tn is not None and tensors[tn].dtype == "float32" for tn in inputs + outputs):
            if opname not in FLOAT_EDGE_OPS:
                raise UnsupportedError(
                    f"node '{node_name}' ({opname}) computes in float32: TinyEngine compiles "
                    "int8-quantized models (float is allowed only at the edges: QUANTIZE, "
                    f"DEQUANTIZE, RESHAPE, {', '.join(FLOAT_EDGE_OPS)}); quantize the model with "
                    "full-integer post-training quantization first")
            ir_op = f"{opname}_F32"     # float at an edge (checked below): ops/float_edge.py
        elif opname not in supported:
            raise UnsupportedError(
                f"operator {opname} (node '{node_name}', output '{outputs[0] if outputs else '?'}') "
                f"is not supported; supported operators: {', '.join(supported)}")
        nodes.append(Node(ir_op, node_name, inputs, outputs, _attrs(opname, op, node_name)))

    g_inputs = [_tensor_at(index_names, j, f"model input {k}")
                for k, j in enumerate(sg.InputsAsNumpy() if sg.InputsLength() else [])]
    g_outputs = [_tensor_at(index_names, j, f"model output {k}")
                 for k, j in enumerate(sg.OutputsAsNumpy() if sg.OutputsLength() else [])]
    if not g_inputs or not g_outputs:
        raise ModelError("the model declares no inputs or no outputs")
    nodes = toposort(nodes, g_inputs, tensors)
    _check_float_edges(nodes, g_inputs, tensors)
    # drop tensors nothing refers to (keeps reports and the planner clean)
    used = set(g_inputs) | set(g_outputs)
    for n in nodes:
        used.update(t for t in n.inputs + n.outputs if t is not None)
    tensors = {k: v for k, v in tensors.items() if k in used}
    desc = model.Description()
    graph = Graph(tensors, nodes, g_inputs, g_outputs, name=Path(label).stem if label else "model",
                  meta={"source": label, "format": "tflite",
                        "float_edge_ops": sorted({n.op for n in nodes if n.op.endswith("_F32")}),
                        "description": desc.decode("utf-8", "replace") if desc else ""})
    graph.validate()
    return graph
