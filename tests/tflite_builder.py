"""Write small .tflite models with the official schema's flatbuffer builders.

Used by the op tests: a one-op (or few-op) model is built here, run by TensorFlow Lite
Micro for the golden output, and compiled by TinyEngine.

    mb = ModelBuilder()
    x = mb.tensor("x", (1, 8, 8, 3), "int8", scale=0.05, zero_point=-3)
    w = mb.const("w", weights, "int8", scale=np.full(4, 0.01), zero_point=np.zeros(4),
                 quantized_dimension=0)
    y = mb.tensor("y", (1, 8, 8, 4), "int8", scale=0.1, zero_point=5)
    mb.op("CONV_2D", [x, w, -1], [y], padding="SAME", stride_w=1, stride_h=1)
    mb.inputs([x]); mb.outputs([y])
    data = mb.build()

Option keyword arguments are the snake_case field names of the op's *Options table in
the TFLite schema; enum values (padding, fused_activation_function) may be given by name.
"""
from __future__ import annotations

import importlib

import flatbuffers
import numpy as np
import tflite

# op -> its options table in the schema (None: the op takes no options)
OPTIONS_TABLE = {
    "CONV_2D": "Conv2DOptions",
    "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
    "FULLY_CONNECTED": "FullyConnectedOptions",
    "ADD": "AddOptions",
    "SUB": "SubOptions",
    "MUL": "MulOptions",
    "AVERAGE_POOL_2D": "Pool2DOptions",
    "MAX_POOL_2D": "Pool2DOptions",
    "MEAN": "ReducerOptions",
    "SUM": "ReducerOptions",
    "PAD": "PadOptions",
    "PADV2": "PadV2Options",
    "RESHAPE": "ReshapeOptions",
    "SOFTMAX": "SoftmaxOptions",
    "LOG_SOFTMAX": "LogSoftmaxOptions",
    "CONCATENATION": "ConcatenationOptions",
    "TRANSPOSE": "TransposeOptions",
    "RESIZE_NEAREST_NEIGHBOR": "ResizeNearestNeighborOptions",
    "QUANTIZE": None,
    "DEQUANTIZE": None,
    "LOGISTIC": None,
    "TANH": None,
    "RELU": None,
    "HARD_SWISH": None,
}

TENSOR_TYPES = {
    "float32": tflite.TensorType.FLOAT32,
    "int8": tflite.TensorType.INT8,
    "uint8": tflite.TensorType.UINT8,
    "int16": tflite.TensorType.INT16,
    "int32": tflite.TensorType.INT32,
    "int64": tflite.TensorType.INT64,
}

ENUMS = {
    "padding": tflite.Padding,
    "fused_activation_function": tflite.ActivationFunctionType,
}


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _mod(name: str):
    return importlib.import_module(f"tflite.{name}")


class ModelBuilder:
    def __init__(self, description: str = "tinyengine test model") -> None:
        self.description = description
        self._tensors: list = []   # dicts: name, shape, dtype, quant, buffer data
        self._ops: list = []       # (opname, inputs, outputs, options)
        self._inputs: list = []
        self._outputs: list = []

    # -- graph description ------------------------------------------------------------
    def tensor(self, name, shape, dtype="int8", scale=None, zero_point=None,
               quantized_dimension=0) -> int:
        self._tensors.append(dict(name=name, shape=tuple(shape), dtype=dtype, data=None,
                                  scale=scale, zero_point=zero_point, qdim=quantized_dimension))
        return len(self._tensors) - 1

    def const(self, name, data, dtype=None, scale=None, zero_point=None,
              quantized_dimension=0) -> int:
        data = np.asarray(data)
        dtype = dtype or str(data.dtype)
        data = data.astype(dtype)
        idx = self.tensor(name, data.shape, dtype, scale, zero_point, quantized_dimension)
        self._tensors[idx]["data"] = data
        return idx

    def op(self, opname: str, inputs, outputs, **options) -> None:
        if opname not in OPTIONS_TABLE:
            raise KeyError(f"ModelBuilder: no options table known for {opname}")
        self._ops.append((opname, list(inputs), list(outputs), options))

    def inputs(self, idx) -> None:
        self._inputs = list(idx)

    def outputs(self, idx) -> None:
        self._outputs = list(idx)

    # -- serialization ----------------------------------------------------------------
    def build(self) -> bytes:
        b = flatbuffers.Builder(1024)
        Model, SubGraph, Tensor = _mod("Model"), _mod("SubGraph"), _mod("Tensor")
        Buffer, Operator, OperatorCode = _mod("Buffer"), _mod("Operator"), _mod("OperatorCode")
        QP = _mod("QuantizationParameters")

        # buffers: 0 is the empty sentinel
        buffer_offsets = [self._buffer(b, Buffer, None)]
        tensor_buffer = []
        for t in self._tensors:
            if t["data"] is None:
                tensor_buffer.append(0)
            else:
                buffer_offsets.append(self._buffer(b, Buffer, t["data"]))
                tensor_buffer.append(len(buffer_offsets) - 1)

        tensor_offsets = []
        for t, buf in zip(self._tensors, tensor_buffer):
            name = b.CreateString(t["name"])
            shape = b.CreateNumpyVector(np.array(t["shape"], dtype=np.int32))
            quant = None
            if t["scale"] is not None:
                scale = b.CreateNumpyVector(np.atleast_1d(np.asarray(t["scale"], np.float32)))
                zp_arr = t["zero_point"] if t["zero_point"] is not None else 0
                zp = b.CreateNumpyVector(np.atleast_1d(np.asarray(zp_arr, np.int64)))
                QP.QuantizationParametersStart(b)
                QP.QuantizationParametersAddScale(b, scale)
                QP.QuantizationParametersAddZeroPoint(b, zp)
                QP.QuantizationParametersAddQuantizedDimension(b, int(t["qdim"]))
                quant = QP.QuantizationParametersEnd(b)
            Tensor.TensorStart(b)
            Tensor.TensorAddShape(b, shape)
            Tensor.TensorAddType(b, TENSOR_TYPES[t["dtype"]])
            Tensor.TensorAddBuffer(b, buf)
            Tensor.TensorAddName(b, name)
            if quant is not None:
                Tensor.TensorAddQuantization(b, quant)
            tensor_offsets.append(Tensor.TensorEnd(b))

        opcodes: list = []
        op_offsets = []
        for opname, ins, outs, options in self._ops:
            if opname not in opcodes:
                opcodes.append(opname)
            opt_type, opt_offset = self._options(b, opname, options)
            ins_v = b.CreateNumpyVector(np.array(ins, dtype=np.int32))
            outs_v = b.CreateNumpyVector(np.array(outs, dtype=np.int32))
            Operator.OperatorStart(b)
            Operator.OperatorAddOpcodeIndex(b, opcodes.index(opname))
            Operator.OperatorAddInputs(b, ins_v)
            Operator.OperatorAddOutputs(b, outs_v)
            if opt_offset is not None:
                Operator.OperatorAddBuiltinOptionsType(b, opt_type)
                Operator.OperatorAddBuiltinOptions(b, opt_offset)
            op_offsets.append(Operator.OperatorEnd(b))

        code_offsets = []
        for opname in opcodes:
            code = getattr(tflite.BuiltinOperator, opname)
            OperatorCode.OperatorCodeStart(b)
            OperatorCode.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
            OperatorCode.OperatorCodeAddBuiltinCode(b, code)
            OperatorCode.OperatorCodeAddVersion(b, 1)
            code_offsets.append(OperatorCode.OperatorCodeEnd(b))

        tensors_v = self._offset_vector(b, tensor_offsets)
        ops_v = self._offset_vector(b, op_offsets)
        in_v = b.CreateNumpyVector(np.array(self._inputs, dtype=np.int32))
        out_v = b.CreateNumpyVector(np.array(self._outputs, dtype=np.int32))
        sg_name = b.CreateString("main")
        SubGraph.SubGraphStart(b)
        SubGraph.SubGraphAddTensors(b, tensors_v)
        SubGraph.SubGraphAddInputs(b, in_v)
        SubGraph.SubGraphAddOutputs(b, out_v)
        SubGraph.SubGraphAddOperators(b, ops_v)
        SubGraph.SubGraphAddName(b, sg_name)
        subgraph = SubGraph.SubGraphEnd(b)

        subgraphs_v = self._offset_vector(b, [subgraph])
        codes_v = self._offset_vector(b, code_offsets)
        buffers_v = self._offset_vector(b, buffer_offsets)
        desc = b.CreateString(self.description)
        Model.ModelStart(b)
        Model.ModelAddVersion(b, 3)
        Model.ModelAddOperatorCodes(b, codes_v)
        Model.ModelAddSubgraphs(b, subgraphs_v)
        Model.ModelAddDescription(b, desc)
        Model.ModelAddBuffers(b, buffers_v)
        b.Finish(Model.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())

    @staticmethod
    def _offset_vector(b, offsets):
        b.StartVector(4, len(offsets), 4)
        for off in reversed(offsets):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    @staticmethod
    def _buffer(b, Buffer, data):
        vec = None
        if data is not None:
            payload = np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<")).tobytes()
            b.StartVector(1, len(payload), 16)
            b.head = b.Head() - len(payload)
            b.Bytes[b.Head():b.Head() + len(payload)] = payload
            b.vectorNumElems = len(payload)
            vec = b.EndVector()
        Buffer.BufferStart(b)
        if vec is not None:
            Buffer.BufferAddData(b, vec)
        return Buffer.BufferEnd(b)

    @staticmethod
    def _options(b, opname, options):
        table = OPTIONS_TABLE[opname]
        if table is None:
            if options:
                raise ValueError(f"{opname} takes no options, got {sorted(options)}")
            return 0, None
        mod = _mod(table)
        getattr(mod, f"{table}Start")(b)
        for key, value in options.items():
            if isinstance(value, str):
                value = getattr(ENUMS[key], value)
            adder = getattr(mod, f"{table}Add{_camel(key)}", None)
            if adder is None:
                raise ValueError(f"{table} has no field '{key}'")
            adder(b, value)
        return getattr(tflite.BuiltinOptions, table), getattr(mod, f"{table}End")(b)


def from_graph(graph) -> bytes:
    """A .tflite file of an in-memory tinyengine graph as its frontend reads one (before any pass):
    CONV_2D, DEPTHWISE_CONV_2D, ADD, AVERAGE_POOL_2D, FULLY_CONNECTED with their normalized attrs.
    Lets a test run TFLM on a network that was never a file (tinynas' candidates)."""
    mb = ModelBuilder(f"{graph.name} (from a tinyengine graph)")
    index = {}
    for name, t in graph.tensors.items():
        q = t.quant
        scale = None if q is None else q.scale
        zp = None if q is None else q.zero_point
        axis = 0 if q is None or q.axis is None else q.axis
        if t.is_const:
            index[name] = mb.const(name, t.data, t.dtype, scale, zp, axis)
        else:
            index[name] = mb.tensor(name, t.shape, t.dtype, scale, zp, axis)
    for n in graph.nodes:
        a = n.attrs
        opts = {}
        if "activation" in a:
            opts["fused_activation_function"] = a["activation"]
        if "padding" in a:
            opts["padding"] = a["padding"]
        if "stride" in a:
            opts["stride_h"], opts["stride_w"] = a["stride"]
        if "dilation" in a:
            opts["dilation_h_factor"], opts["dilation_w_factor"] = a["dilation"]
        if "filter" in a:
            opts["filter_height"], opts["filter_width"] = a["filter"]
        if "depth_multiplier" in a:
            opts["depth_multiplier"] = a["depth_multiplier"]
        if a.get("keep_num_dims"):
            opts["keep_num_dims"] = True
        mb.op(n.op, [index[t] if t is not None else -1 for t in n.inputs], [index[t] for t in n.outputs],
              **opts)
    mb.inputs([index[t] for t in graph.inputs])
    mb.outputs([index[t] for t in graph.outputs])
    return mb.build()
