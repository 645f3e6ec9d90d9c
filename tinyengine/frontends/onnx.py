"""ONNX frontend: a .onnx file -> TinyEngine IR (int8, NHWC), parsed with the `onnx` package.

Two kinds of model are accepted:

* QDQ int8 models (QuantizeLinear / DequantizeLinear around the compute ops), as written by
  ``onnxruntime.quantization.quantize_static`` with int8 (or uint8) activations and int8
  per-channel or per-tensor symmetric weights.  Every Q/DQ pair is folded into the
  quantization parameters of the tensor between them; constant weights and int32 biases
  behind a DequantizeLinear become quantized constants.
* float models, quantized by :mod:`tinyengine.quantizer` from calibration data (per-channel
  symmetric int8 weights, per-tensor asymmetric int8 activations, int32 biases).  Without
  calibration data the frontend stops with a message saying how to give it.

Both are lowered the same way, once, at compile time:

1. parse; constant-fold (Constant, Shape, and any node whose inputs are all constants);
   Identity / Dropout are dropped;
2. BatchNormalization is folded into the preceding Conv; Relu / Clip(0, 6) / Clip(-1, 1) are
   fused into the producing Conv / Gemm / MatMul / Add / Mul as a TFLite fused activation;
3. QDQ folding (or, for a float model, calibration) gives every activation tensor its int8
   parameters; ops that only move data keep their input's, Sigmoid / Softmax outputs take
   TFLite's fixed 1/256, -128 (with a requantization when a QDQ file says otherwise);
4. each ONNX op becomes the IR's TFLite-style op: Conv -> CONV_2D (OHWI weights) or
   DEPTHWISE_CONV_2D (1HW(C*M)), Gemm / MatMul -> FULLY_CONNECTED, GlobalAveragePool /
   ReduceMean -> MEAN, ...  Every 4-D activation is NHWC; Flatten / Reshape of a tensor whose
   NCHW and NHWC orders differ get a TRANSPOSE so the element order stays ONNX's.

The model's float NCHW input enters through a QUANTIZE node and leaves through a DEQUANTIZE
node, which the ``host_io`` pass moves to the host; ``graph.meta["edge_layout"]`` tells the
``edge_layout`` pass to transpose NCHW <-> NHWC on the host too, so `run --input x.npy` takes
the model's own NCHW float32 input and writes its own float32 output.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import quantizer
from ..errors import ModelError
from ..ir import Graph, IRError, Node, QuantParams, Tensor, toposort
from ..ops import UnsupportedError

SUPPORTED = (
    "Add", "AveragePool", "BatchNormalization", "Clip", "Concat", "Constant", "Conv",
    "DequantizeLinear", "Dropout", "Flatten", "Gemm", "GlobalAveragePool", "Identity",
    "MatMul", "MaxPool", "Mul", "Pad", "QuantizeLinear", "ReduceMean", "Relu", "Reshape",
    "Resize", "Shape", "Sigmoid", "Softmax", "Squeeze", "Transpose", "Unsqueeze",
)
# ops whose output keeps the input's quantization (TFLite copies bytes / ignores requantization)
INHERIT = {"Flatten", "Reshape", "Squeeze", "Unsqueeze", "MaxPool", "AveragePool", "Pad",
           "Resize", "Transpose"}
FIXED = {"Sigmoid", "Softmax"}
FUSABLE = {"Conv", "Gemm", "MatMul", "Add", "Mul"}
_NHWC = (0, 2, 3, 1)          # NCHW array .transpose(_NHWC) -> NHWC
_NCHW = (0, 3, 1, 2)
_AXIS_TO_NHWC = {0: 0, 1: 3, 2: 1, 3: 2}
_ONNX_INT = {2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64, 1: np.float32}


@dataclass
class _N:
    op: str
    name: str
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)
    domain: str = ""


def _err(node: _N, what: str) -> UnsupportedError:
    return UnsupportedError(f"node '{node.name}' ({node.op}): {what}")


def _read(model, label: str):
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


def load(model, calibration: quantizer.Calibration | None = None, name: str | None = None) -> Graph:
    """Load an .onnx model (path or bytes) into a validated, topologically sorted int8 Graph."""
    label = name or ("<model bytes>" if isinstance(model, (bytes, bytearray, memoryview)) else str(model))
    mp = _read(model, label)
    try:
        return _Frontend(mp, label, calibration).run()
    except (ModelError, UnsupportedError, IRError, quantizer.CalibrationError) as e:
        msg = str(e)
        raise type(e)(msg if msg.startswith(label) else f"{label}: {msg}") from None
    except Exception as e:   # a malformed protobuf fails anywhere (missing attributes, bad dims)
        raise ModelError(f"{label}: malformed ONNX model ({type(e).__name__}: {e})") from None


def is_qdq(mp) -> bool:
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in mp.graph.node)


class _Frontend:
    def __init__(self, mp, label: str, calibration):
        self.mp, self.label, self.calibration = mp, label, calibration
        self.opset = next((o.version for o in mp.opset_import if o.domain in ("", "ai.onnx")), 13)
        self.consts: dict = {}          # name -> np.ndarray (float or integer)
        self.qconst: dict = {}          # name -> (int ndarray, QuantParams)  (DQ of a constant)
        self.quant: dict = {}           # activation name -> QuantParams (int8)
        self.shape: dict = {}           # activation name -> ONNX shape
        self.nodes: list = []
        self.inputs: list = []          # float graph inputs (ONNX names)
        self.outputs: list = []
        self.origin: dict = {}          # synthetic name -> ONNX name (calibration lookups)

    # -- 1. parse ---------------------------------------------------------------------------
    def run(self) -> Graph:
        import onnx
        from onnx import numpy_helper

        g = self.mp.graph
        for t in g.initializer:
            self.consts[t.name] = numpy_helper.to_array(t)
        for t in g.input:
            if t.name in self.consts:
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
            self.inputs.append(t.name)
            self.shape[t.name] = tuple(dims)
        if not self.inputs:
            raise ModelError("the model declares no (non-constant) inputs")
        self.outputs = [o.name for o in g.output]
        try:
            inferred = onnx.shape_inference.infer_shapes(self.mp)
            vi = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
        except Exception:
            vi = {}
        counts: dict = {}
        for i, n in enumerate(g.node):
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
            name = n.name or f"{n.op_type.lower()}_{i}"
            counts[name] = counts.get(name, 0) + 1
            if counts[name] > 1:
                name = f"{name}#{counts[name]}"
            self.nodes.append(_N(n.op_type, name, list(n.input), list(n.output), attrs, n.domain))
        self._check_supported()
        self._fold_constants(vi)
        self._check_dangling()
        self._fold_batchnorm()
        self._fuse_activations()
        qdq = self.qdq = any(n.op in ("QuantizeLinear", "DequantizeLinear") for n in self.nodes)
        if qdq:
            self._fold_qdq()
        else:
            self._float_edges()
        self.nodes = self._topo(self.nodes)
        self._infer_shapes()
        if qdq:
            self._propagate_quant(strict=True)
        else:
            self._calibrate()
        return _Lowering(self).run()

    def _check_supported(self) -> None:
        for n in self.nodes:
            if n.domain not in ("", "ai.onnx") or n.op not in SUPPORTED:
                op = n.op if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op}"
                raise UnsupportedError(f"operator {op} (node '{n.name}', output "
                                       f"'{n.outputs[0] if n.outputs else '?'}') is not supported; "
                                       f"supported ONNX operators: {', '.join(SUPPORTED)}")

    def _fold_constants(self, vi: dict) -> None:
        from onnx import numpy_helper
        from onnx.reference import ReferenceEvaluator

        import onnx

        keep = []
        alias: dict = {}
        for n in self.nodes:
            n.inputs = [alias.get(t, t) for t in n.inputs]
            if n.op == "Constant":
                if "value" in n.attrs:
                    self.consts[n.outputs[0]] = numpy_helper.to_array(n.attrs["value"])
                elif "value_float" in n.attrs or "value_int" in n.attrs:
                    v = n.attrs.get("value_float", n.attrs.get("value_int"))
                    self.consts[n.outputs[0]] = np.array(v)
                elif "value_floats" in n.attrs or "value_ints" in n.attrs:
                    v = n.attrs.get("value_floats", n.attrs.get("value_ints"))
                    self.consts[n.outputs[0]] = np.array(v)
                else:
                    raise _err(n, "unsupported Constant attribute "
                                  f"({', '.join(n.attrs)}; supported: value, value_float(s), value_int(s))")
                continue
            if n.op in ("Identity", "Dropout"):
                src = n.inputs[0]
                if src in self.consts:
                    self.consts[n.outputs[0]] = self.consts[src]
                else:
                    alias[n.outputs[0]] = src
                continue
            if n.op == "Shape" and n.inputs[0] not in self.consts:
                shp = self.shape.get(n.inputs[0])
                if shp is None and n.inputs[0] in vi:
                    dims = vi[n.inputs[0]].type.tensor_type.shape.dim
                    if all(d.HasField("dim_value") for d in dims):
                        shp = tuple(d.dim_value for d in dims)
                if shp is None:
                    raise _err(n, f"the shape of '{n.inputs[0]}' is not known at compile time")
                start, end = n.attrs.get("start", 0), n.attrs.get("end", None)
                self.consts[n.outputs[0]] = np.array(shp[start:end], dtype=np.int64)
                continue
            real = [t for t in n.inputs if t]
            if real and all(t in self.consts for t in real) and n.op not in ("QuantizeLinear", "DequantizeLinear"):
                ins = {t: self.consts[t] for t in real}
                node = onnx.helper.make_node(n.op, n.inputs, n.outputs, **n.attrs)
                outs = ReferenceEvaluator(node).run(None, ins)
                for o, v in zip(n.outputs, outs):
                    self.consts[o] = np.asarray(v)
                continue
            keep.append(n)
        self.outputs = [alias.get(t, t) for t in self.outputs]
        self.nodes = keep

    def _check_dangling(self) -> None:
        produced = set(self.inputs) | set(self.consts)
        for n in self.nodes:
            produced.update(n.outputs)
        for n in self.nodes:
            for t in n.inputs:
                if t and t not in produced:
                    raise ModelError(f"node '{n.name}' ({n.op}) reads '{t}', which is neither an input, "
                                     "an initializer nor a node's output (corrupt or truncated file?)")
        for t in self.outputs:
            if t not in produced:
                raise ModelError(f"graph output '{t}' is never produced (corrupt or truncated file?)")
        if any(t in self.consts for t in self.outputs):
            raise UnsupportedError("a graph output is a constant; nothing to compute")

    def _consumers(self) -> dict:
        out: dict = {}
        for n in self.nodes:
            for t in n.inputs:
                if t:
                    out.setdefault(t, []).append(n)
        return out

    def _producers(self) -> dict:
        return {t: n for n in self.nodes for t in n.outputs}

    # -- 2. BatchNorm folding, activation fusion ----------------------------------------------
    def _fold_batchnorm(self) -> None:
        cons, prod = self._consumers(), self._producers()
        drop = set()
        for bn in self.nodes:
            if bn.op != "BatchNormalization":
                continue
            conv = prod.get(bn.inputs[0])
            x = bn.inputs[0]
            if (conv is None or conv.op != "Conv" or len(cons.get(x, [])) != 1 or x in self.outputs
                    or conv.inputs[1] not in self.consts
                    or (len(conv.inputs) > 2 and conv.inputs[2] and conv.inputs[2] not in self.consts)):
                raise _err(bn, "BatchNormalization is supported only right after a Conv with float "
                               "constant weights (it is folded into the Conv)")
            if len(bn.outputs) > 1 and any(bn.outputs[1:]):
                raise _err(bn, "training-mode BatchNormalization (export the model in eval mode)")
            gamma, beta, mean, var = (np.asarray(self.consts[t], np.float64) for t in bn.inputs[1:5])
            eps = float(bn.attrs.get("epsilon", 1e-5))
            k = gamma / np.sqrt(var + eps)
            w = np.asarray(self.consts[conv.inputs[1]], np.float64)
            b = (np.asarray(self.consts[conv.inputs[2]], np.float64)
                 if len(conv.inputs) > 2 and conv.inputs[2] else np.zeros(w.shape[0]))
            wname, bname = conv.inputs[1] + ":bnfold", conv.name + ":bias_bnfold"
            self.consts[wname] = (w * k.reshape(-1, 1, 1, 1)).astype(np.float32)
            self.consts[bname] = ((b - mean) * k + beta).astype(np.float32)
            conv.inputs = [conv.inputs[0], wname, bname]
            conv.outputs = [bn.outputs[0]]
            drop.add(id(bn))
        self.nodes = [n for n in self.nodes if id(n) not in drop]

    def _activation_of(self, n: _N):
        """TFLite fused activation name of a Relu / Clip node, or None if it has none."""
        if n.op == "Relu":
            return "RELU"
        lo, hi = n.attrs.get("min"), n.attrs.get("max")
        if len(n.inputs) > 1 and n.inputs[1]:
            lo = float(np.asarray(self.consts[n.inputs[1]]).reshape(-1)[0]) if n.inputs[1] in self.consts else "?"
        if len(n.inputs) > 2 and n.inputs[2]:
            hi = float(np.asarray(self.consts[n.inputs[2]]).reshape(-1)[0]) if n.inputs[2] in self.consts else "?"
        lo = None if lo is None or (isinstance(lo, float) and lo < -3e38) else lo
        hi = None if hi is None or (isinstance(hi, float) and hi > 3e38) else hi
        table = {(0.0, None): "RELU", (0.0, 6.0): "RELU6", (-1.0, 1.0): "RELU_N1_TO_1"}
        act = table.get((None if lo is None else float(lo), None if hi is None else float(hi)))
        if act is None:
            raise _err(n, f"Clip range [{lo}, {hi}] (supported: [0, inf) = ReLU, [0, 6] = ReLU6, "
                          "[-1, 1])")
        return act

    def _fuse_activations(self) -> None:
        cons, prod = self._consumers(), self._producers()
        drop = set()
        for n in self.nodes:
            if n.op not in ("Relu", "Clip"):
                continue
            act = self._activation_of(n)
            n.attrs["_activation"] = act
            x = n.inputs[0]
            p = prod.get(x)
            if (p is not None and p.op in FUSABLE and len(cons.get(x, [])) == 1
                    and x not in self.outputs and p.attrs.get("_activation", "NONE") == "NONE"):
                p.attrs["_activation"] = act
                p.outputs = [n.outputs[0]]
                drop.add(id(n))
        self.nodes = [n for n in self.nodes if id(n) not in drop]

    # -- 3. QDQ folding / float edges ---------------------------------------------------------
    def _qparams(self, n: _N) -> tuple:
        """(QuantParams for int8 codes, onnx dtype of the codes) of a Q / DQ node."""
        scale = np.asarray(self.consts.get(n.inputs[1]), dtype=np.float64) if n.inputs[1] in self.consts else None
        if scale is None:
            raise _err(n, "the scale must be a constant")
        if len(n.inputs) > 2 and n.inputs[2]:
            if n.inputs[2] not in self.consts:
                raise _err(n, "the zero point must be a constant")
            zp_arr = np.asarray(self.consts[n.inputs[2]])
        else:
            zp_arr = np.zeros(scale.shape, np.uint8 if n.op == "QuantizeLinear" else np.int8)
        dtype = zp_arr.dtype
        if dtype not in (np.int8, np.uint8, np.int32):
            raise _err(n, f"{dtype} quantization (supported: int8, uint8 activations; int8 weights; "
                          "int32 biases)")
        if "block_size" in n.attrs and n.attrs["block_size"]:
            raise _err(n, "blocked quantization (supported: per-tensor and per-channel)")
        zp = zp_arr.astype(np.int64).reshape(-1)
        if dtype == np.uint8:
            zp = zp - 128                       # the same reals as int8 codes q - 128
        axis = n.attrs.get("axis", 1) if scale.size > 1 else None
        return QuantParams(scale.reshape(-1), zp, axis), dtype

    def _fold_qdq(self) -> None:
        prod = self._producers()
        alias: dict = {}          # DQ output -> int8 tensor
        q_of: dict = {}           # float tensor -> [Q output names]
        synth: list = []
        drop = set()
        for n in self.nodes:
            if n.op == "DequantizeLinear":
                qp, dt = self._qparams(n)
                x = n.inputs[0]
                drop.add(id(n))
                if x in self.consts:
                    data = np.asarray(self.consts[x])
                    if data.dtype == np.uint8:
                        data = (data.astype(np.int16) - 128).astype(np.int8)
                    if qp.axis is not None and qp.axis < 0:
                        qp.axis += data.ndim
                    self.qconst[n.outputs[0]] = (data, qp)
                else:
                    alias[n.outputs[0]] = x
                    self.quant.setdefault(x, qp)
        for n in self.nodes:
            if n.op == "QuantizeLinear":
                qp, dt = self._qparams(n)
                if dt == np.int32:
                    raise _err(n, "int32 activations (supported: int8, uint8)")
                drop.add(id(n))
                x, q = n.inputs[0], n.outputs[0]
                if x in self.consts:             # a float constant quantized in the file
                    c = np.asarray(self.consts[x], np.float64)
                    shape = [1] * c.ndim
                    if qp.axis is not None:
                        shape[qp.axis] = -1
                    s_, z_ = (qp.scale.reshape(shape), qp.zero_point.reshape(shape)) if c.ndim else \
                        (qp.scale[0], qp.zero_point[0])
                    self.consts[q] = np.clip(np.round(c / s_) + z_, -128, 127).astype(np.int8)
                    continue
                if qp.per_channel:
                    raise _err(n, "per-channel quantization of an activation (supported: per-tensor)")
                self.quant[q] = qp
                q_of.setdefault(x, []).append(q)
        rename: dict = {}
        for x, qs in q_of.items():
            first = qs[0]
            if x in self.inputs:
                for q in qs:
                    synth.append(_N("__QUANTIZE_IN", f"{q}:quantize", [x], [q]))
                continue
            if x in alias:
                for q in qs:
                    synth.append(_N("__REQUANT", f"{q}:requantize", [alias[x]], [q]))
                continue
            rename[x] = first
            for q in qs[1:]:
                synth.append(_N("__REQUANT", f"{q}:requantize", [first], [q]))
            if x in self.outputs:
                raise UnsupportedError(f"graph output '{x}' is float (not behind a QuantizeLinear)")
        compute = [n for n in self.nodes if id(n) not in drop]

        def res(t):
            t = alias.get(t, t)
            return rename.get(t, t)

        for n in compute:
            n.inputs = [res(t) if t else t for t in n.inputs]
            n.outputs = [rename.get(t, t) for t in n.outputs]
        for s in synth:
            s.inputs = [res(t) for t in s.inputs]
        outs = []
        for t in self.outputs:
            if t in alias:
                src = res(t)
                synth.append(_N("__DEQUANTIZE_OUT", f"{t}:dequantize", [src], [t]))
                outs.append(t)
            elif t in self.quant:
                outs.append(t)
            else:
                p = prod.get(t)
                raise UnsupportedError(f"graph output '{t}' (node '{p.name if p else '?'}') is float: "
                                       "a QDQ model must end with a DequantizeLinear or a QuantizeLinear")
        self.outputs = outs
        for n in compute:
            for t in n.inputs:
                if t and t in self.inputs:
                    raise _err(n, f"reads the float input '{t}' directly (a QDQ model quantizes its "
                                  "inputs with QuantizeLinear)")
        self.nodes = synth + compute

    def _float_edges(self) -> None:
        synth = []
        ren_in = {}
        for x in self.inputs:
            q = f"{x}:q"
            ren_in[x] = q
            self.origin[q] = x
            synth.append(_N("__QUANTIZE_IN", f"{x}:quantize", [x], [q]))
        ren_out = {}
        outs = []
        for y in self.outputs:
            if y in self.inputs:
                raise UnsupportedError(f"graph output '{y}' is a graph input; nothing to compute")
            q = f"{y}:q"
            ren_out[y] = q
            self.origin[q] = y
            synth.append(_N("__DEQUANTIZE_OUT", f"{y}:dequantize", [q], [y]))
            outs.append(y)
        for n in self.nodes:
            n.inputs = [ren_in.get(t, ren_out.get(t, t)) if t else t for t in n.inputs]
            n.outputs = [ren_out.get(t, t) for t in n.outputs]
        self.outputs = outs
        self.nodes = synth + self.nodes

    def _topo(self, nodes: list) -> list:
        prod = {t: n for n in nodes for t in n.outputs}
        order, state = [], {}

        def visit(n):
            stack = [(n, iter([prod[t] for t in n.inputs if t in prod]))]
            state[id(n)] = 1
            while stack:
                node, deps = stack[-1]
                dep = next(deps, None)
                if dep is None:
                    stack.pop()
                    state[id(node)] = 2
                    order.append(node)
                elif state.get(id(dep)) is None:
                    state[id(dep)] = 1
                    stack.append((dep, iter([prod[t] for t in dep.inputs if t in prod])))
                elif state.get(id(dep)) == 1:
                    raise ModelError(f"the graph has a cycle through node '{dep.name}'")

        for n in nodes:
            if id(n) not in state:
                visit(n)
        return order

    # -- shapes (ONNX logical layout) --------------------------------------------------------
    def _infer_shapes(self) -> None:
        for n in self.nodes:
            fn = getattr(self, f"_shape_{n.op.strip('_')}", None)
            if fn is None:
                x = self.shape[n.inputs[0]]
                for o in n.outputs:
                    if o:
                        self.shape[o] = x
                continue
            shapes = fn(n)
            for o, s in zip(n.outputs, shapes):
                if o:
                    if any(int(d) <= 0 for d in s):
                        raise _err(n, f"output shape {tuple(s)} is empty")
                    self.shape[o] = tuple(int(d) for d in s)

    def _in(self, n, i):
        t = n.inputs[i] if i < len(n.inputs) else None
        if not t:
            return None
        if t in self.shape:
            return self.shape[t]
        if t in self.qconst:
            return self.qconst[t][0].shape
        if t in self.consts:
            return np.shape(self.consts[t])
        raise _err(n, f"input '{t}' has no known shape")

    def const_of(self, n, i, what: str):
        t = n.inputs[i] if i < len(n.inputs) else None
        if not t:
            return None
        if t in self.consts:
            return np.asarray(self.consts[t])
        raise _err(n, f"{what} ('{t}') must be a constant")

    @staticmethod
    def _window_attrs(n, x, k=None):
        k = list(k if k is not None else n.attrs.get("kernel_shape"))
        nd = len(k)
        strides = list(n.attrs.get("strides", [1] * nd))
        dil = list(n.attrs.get("dilations", [1] * nd))
        pads = list(n.attrs.get("pads", [0] * (2 * nd)))
        auto = n.attrs.get("auto_pad", "NOTSET")
        spatial = x[2:]
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = [0] * (2 * nd)
            for i in range(nd):
                out = -(-spatial[i] // strides[i])
                total = max((out - 1) * strides[i] + (k[i] - 1) * dil[i] + 1 - spatial[i], 0)
                small, big = total // 2, total - total // 2
                pads[i], pads[i + nd] = (small, big) if auto == "SAME_UPPER" else (big, small)
        elif auto == "VALID":
            pads = [0] * (2 * nd)
        ceil = int(n.attrs.get("ceil_mode", 0))
        outs = []
        for i in range(nd):
            eff = (k[i] - 1) * dil[i] + 1
            num = spatial[i] + pads[i] + pads[i + nd] - eff
            o = (-(-num // strides[i]) if ceil else num // strides[i]) + 1
            if ceil and (o - 1) * strides[i] >= spatial[i] + pads[i]:
                o -= 1
            outs.append(o)
        return k, strides, dil, pads, outs

    def _shape_Conv(self, n):
        x, w = self._in(n, 0), self._in(n, 1)
        if len(x) != 4 or w is None or len(w) != 4:
            raise _err(n, f"only 2-D convolution on NCHW inputs is supported (input {x})")
        _, _, _, _, outs = self._window_attrs(n, x, w[2:])
        return [(x[0], w[0], outs[0], outs[1])]

    def _shape_pool(self, n):
        x = self._in(n, 0)
        if len(x) != 4:
            raise _err(n, f"only 2-D pooling on NCHW inputs is supported (input {x})")
        _, _, _, _, outs = self._window_attrs(n, x)
        return [(x[0], x[1], outs[0], outs[1])]

    _shape_MaxPool = _shape_AveragePool = _shape_pool

    def _shape_GlobalAveragePool(self, n):
        x = self._in(n, 0)
        return [tuple(x[:2]) + (1,) * (len(x) - 2)]

    def _shape_Gemm(self, n):
        a, b = self._in(n, 0), self._in(n, 1)
        if len(a) != 2 or b is None or len(b) != 2:
            raise _err(n, f"Gemm needs 2-D operands (got {a} and {b})")
        if n.attrs.get("transA", 0):
            raise _err(n, "transA=1 (supported: 0)")
        out = b[0] if n.attrs.get("transB", 0) else b[1]
        return [(a[0], out)]

    def _shape_MatMul(self, n):
        a, b = self._in(n, 0), self._in(n, 1)
        if b is None or len(b) != 2 or n.inputs[1] in self.shape:
            raise _err(n, "MatMul needs a constant 2-D second operand (weights)")
        if len(a) == 4 or len(a) < 1 or a[-1] != b[0]:
            raise _err(n, f"MatMul of {a} by {b} (supported: [..., K] x [K, N], input rank up to 3)")
        return [tuple(a[:-1]) + (b[1],)]

    def _shape_binary(self, n):
        a, b = self._in(n, 0), self._in(n, 1)
        try:
            return [tuple(np.broadcast_shapes(tuple(a), tuple(b)))]
        except ValueError:
            raise _err(n, f"shapes {a} and {b} do not broadcast") from None

    _shape_Add = _shape_Mul = _shape_binary

    def _shape_Flatten(self, n):
        x = self._in(n, 0)
        axis = int(n.attrs.get("axis", 1))
        axis = axis + len(x) if axis < 0 else axis
        return [(int(np.prod(x[:axis], dtype=np.int64)), int(np.prod(x[axis:], dtype=np.int64)))]

    def _shape_Reshape(self, n):
        x = self._in(n, 0)
        s = [int(v) for v in self.const_of(n, 1, "the target shape").reshape(-1)]
        allow0 = int(n.attrs.get("allowzero", 0))
        s = [x[i] if v == 0 and not allow0 and i < len(x) else v for i, v in enumerate(s)]
        if s.count(-1) > 1:
            raise _err(n, f"target shape {s} has more than one -1")
        if -1 in s:
            rest = int(np.prod([v for v in s if v != -1], dtype=np.int64))
            s[s.index(-1)] = int(np.prod(x, dtype=np.int64)) // max(rest, 1)
        if int(np.prod(s, dtype=np.int64)) != int(np.prod(x, dtype=np.int64)):
            raise _err(n, f"cannot reshape {x} to {s}")
        return [tuple(s)]

    def _axes(self, n, rank):
        """The axes (input 1 or attribute), made non-negative for a tensor of `rank` dims."""
        if len(n.inputs) > 1 and n.inputs[1]:
            ax = [int(v) for v in self.const_of(n, 1, "axes").reshape(-1)]
        else:
            ax = n.attrs.get("axes")
            if ax is None:
                return None
        return sorted(int(a) + rank if int(a) < 0 else int(a) for a in ax)

    def _shape_Squeeze(self, n):
        x = self._in(n, 0)
        ax = self._axes(n, len(x))
        ax = [i for i, d in enumerate(x) if d == 1] if ax is None else ax
        return [tuple(d for i, d in enumerate(x) if i not in ax)]

    def _shape_Unsqueeze(self, n):
        x = list(self._in(n, 0))
        raw = self._axes(n, 0)
        if raw is None:
            raise _err(n, "Unsqueeze without axes")
        rank = len(x) + len(raw)
        ax = self._axes(n, rank)
        for a in ax:
            x.insert(a, 1)
        return [tuple(x)]

    def _shape_Transpose(self, n):
        x = self._in(n, 0)
        perm = n.attrs.get("perm", list(range(len(x)))[::-1])
        return [tuple(x[p] for p in perm)]

    def _shape_Concat(self, n):
        shapes = [self._in(n, i) for i in range(len(n.inputs)) if n.inputs[i]]
        axis = int(n.attrs.get("axis"))
        axis = axis + len(shapes[0]) if axis < 0 else axis
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        return [tuple(out)]

    def _shape_ReduceMean(self, n):
        x = self._in(n, 0)
        ax = self._axes(n, len(x))
        if ax is None:
            if n.attrs.get("noop_with_empty_axes", 0):
                raise _err(n, "an empty axes list with noop_with_empty_axes=1")
            ax = list(range(len(x)))
        keep = int(n.attrs.get("keepdims", 1))
        return [tuple((1 if i in ax else d) for i, d in enumerate(x) if keep or i not in ax)]

    def _shape_Pad(self, n):
        x = self._in(n, 0)
        pads = self._pads(n, len(x))
        return [tuple(d + pads[i] + pads[i + len(x)] for i, d in enumerate(x))]

    def _pads(self, n, rank):
        if self.opset >= 11:
            pads = [int(v) for v in self.const_of(n, 1, "pads").reshape(-1)]
            if len(n.inputs) > 3 and n.inputs[3]:
                raise _err(n, "the axes input (supported: pads for every axis)")
        else:
            pads = list(n.attrs.get("pads"))
        if len(pads) != 2 * rank:
            raise _err(n, f"{len(pads)} pads for a {rank}-D input")
        if any(p < 0 for p in pads):
            raise _err(n, "negative pads (cropping) are not supported")
        return pads

    def _shape_Resize(self, n):
        x = self._in(n, 0)
        if len(x) != 4:
            raise _err(n, f"Resize of a {len(x)}-D tensor (supported: 4-D NCHW)")
        sizes = self.const_of(n, 3, "sizes") if len(n.inputs) > 3 and n.inputs[3] else None
        if sizes is not None and sizes.size:
            out = [int(v) for v in sizes.reshape(-1)]
        else:
            idx = 2 if self.opset >= 11 else 1
            scales = self.const_of(n, idx, "scales")
            if scales is None or scales.size != 4:
                raise _err(n, "needs constant scales or sizes for all 4 dimensions")
            out = [int(np.floor(d * float(s))) for d, s in zip(x, scales.reshape(-1))]
        if out[0] != x[0] or out[1] != x[1]:
            raise _err(n, "only the spatial (H, W) dimensions may be resized")
        return [tuple(out)]

    # -- quantization ------------------------------------------------------------------------
    def _propagate_quant(self, strict: bool) -> None:
        fixed = QuantParams(*quantizer.FIXED_SIGMOID_SOFTMAX)
        for n in self.nodes:
            for o in n.outputs:
                if not o or o in self.quant or n.op == "__DEQUANTIZE_OUT":
                    continue
                if n.op in INHERIT or n.op in ("Relu", "Clip"):
                    src = n.inputs[0]
                    if src not in self.quant:
                        raise _err(n, f"input '{src}' has no quantization parameters")
                    self.quant[o] = self.quant[src]
                elif n.op in FIXED:
                    self.quant[o] = fixed
                elif strict:
                    raise _err(n, f"output '{o}' has no QuantizeLinear: the QDQ model is not fully "
                                  "quantized (quantize it with int8 activations, or give the float "
                                  "model and --calibration)")

    def _calibrate(self) -> None:
        if self.calibration is None or self.calibration.source is None:
            shp = " x ".join(str(d) for d in self.shape[self.inputs[0]][1:])
            raise quantizer.CalibrationError(
                f"float model: TinyEngine compiles int8 and quantizes a float ONNX model only from "
                f"calibration data; give --calibration data.npy (N x {shp} float32, the model's own "
                "layout) or --calibration DIR (a folder of images, see --calib-size/--calib-mean/"
                "--calib-std), or quantize it to QDQ int8 with onnxruntime.quantization.quantize_static")
        if len(self.inputs) != 1:
            raise UnsupportedError(f"calibration of a model with {len(self.inputs)} inputs "
                                   "(supported: one)")
        x = self.inputs[0]
        data = self.calibration.load(self.shape[x], self.label)
        need = [x]
        for n in self.nodes:
            if n.op in INHERIT or n.op in FIXED or n.op in ("__DEQUANTIZE_OUT", "Relu", "Clip"):
                continue
            for o in n.outputs:
                if o:
                    need.append(self.origin.get(o, o))
        ranges = quantizer.calibrate(self.mp, need, data, x)
        for n in self.nodes:
            if n.op in INHERIT or n.op in FIXED or n.op in ("__DEQUANTIZE_OUT", "Relu", "Clip"):
                continue
            for o in n.outputs:
                if o:
                    self.quant[o] = quantizer.activation_quant(*ranges[self.origin.get(o, o)])
        self._propagate_quant(strict=True)


# -- 4. lowering to the IR -------------------------------------------------------------------------
def _nhwc(shape: tuple) -> tuple:
    return tuple(shape[i] for i in _NHWC) if len(shape) == 4 else tuple(shape)


def _same_q(a: QuantParams, b: QuantParams) -> bool:
    return (np.float32(a.scale[0]) == np.float32(b.scale[0])
            and int(a.zero_point[0]) == int(b.zero_point[0]))


class _Lowering:
    def __init__(self, fe: _Frontend):
        self.fe = fe
        self.tensors: dict = {}
        self.nodes: list = []
        self.map: dict = {}       # ONNX activation name -> IR tensor name
        self.names: set = set()
        self.meta_layout = {"inputs": {}, "outputs": {}}
        self.consumers = fe._consumers()

    # helpers
    def uniq(self, base: str) -> str:
        name, i = base, 1
        while name in self.tensors:
            i += 1
            name = f"{base}#{i}"
        return name

    def new(self, base: str, shape: tuple, dtype="int8", quant=None, data=None) -> str:
        name = self.uniq(base)
        self.tensors[name] = Tensor(name, shape, dtype, quant, data)
        return name

    def const(self, base: str, data: np.ndarray, dtype: str, quant=None) -> str:
        data = np.ascontiguousarray(np.asarray(data).astype(dtype))
        return self.new(base, data.shape, dtype, quant, data)

    def emit(self, op, name, inputs, outputs, attrs=None) -> Node:
        nm, i = name, 1
        while nm in self.names:
            i += 1
            nm = f"{name}#{i}"
        self.names.add(nm)
        node = Node(op, nm, list(inputs), list(outputs), dict(attrs or {}))
        self.nodes.append(node)
        return node

    def act(self, onnx_name: str) -> str:
        return self.map[onnx_name]

    def q(self, onnx_name: str) -> QuantParams:
        return self.fe.quant[onnx_name]

    def out(self, n: _N, i: int = 0) -> str:
        """Create the IR tensor of an ONNX output with its own quantization."""
        o = n.outputs[i]
        name = self.new(o, _nhwc(self.fe.shape[o]), "int8", self.q(o))
        self.map[o] = name
        return name

    def finish(self, n: _N, written: str, i: int = 0) -> None:
        """The op wrote `written` in a quantization it chose; requantize if the ONNX output's
        differs."""
        o = n.outputs[i]
        want = self.q(o)
        if _same_q(self.tensors[written].quant, want):
            self.map[o] = written
            return
        dst = self.out(n, i)
        self.emit("QUANTIZE", f"{n.name}:requantize", [written], [dst])

    def tmp(self, n: _N, shape: tuple, quant: QuantParams, suffix: str) -> str:
        return self.new(f"{n.outputs[0]}:{suffix}", shape, "int8", quant)

    def requant_to(self, n: _N, src: str, quant: QuantParams, suffix: str) -> str:
        if _same_q(self.tensors[src].quant, quant):
            return src
        dst = self.new(f"{src}:{suffix}", self.tensors[src].shape, "int8", quant)
        self.emit("QUANTIZE", f"{n.name}:{suffix}", [src], [dst])
        return dst

    # weights / biases / const operands
    def weights(self, n: _N, idx: int, axis: int):
        t = n.inputs[idx]
        if t in self.fe.qconst:
            data, qp = self.fe.qconst[t]
            if data.dtype != np.int8:
                raise _err(n, f"weights '{t}' are {data.dtype} (supported: int8)")
            if np.any(qp.zero_point != 0):
                raise _err(n, f"weights '{t}' are asymmetric (zero point != 0); TFLite int8 needs "
                              "symmetric weights (quantize_static with WeightSymmetric=True)")
            if qp.per_channel and qp.axis != axis:
                raise _err(n, f"weights '{t}' are quantized per channel along axis {qp.axis} "
                              f"(supported: the output-channel axis {axis})")
            return data, qp
        if t in self.fe.consts:
            w = np.asarray(self.fe.consts[t])
            if w.dtype.kind != "f":
                raise _err(n, f"weights '{t}' are {w.dtype} without DequantizeLinear")
            return quantizer.quantize_weights(w, axis)
        raise _err(n, f"weights '{t}' must be a constant")

    def bias(self, n: _N, idx: int, in_q: QuantParams, w_q: QuantParams, count: int):
        t = n.inputs[idx] if idx < len(n.inputs) else None
        if not t:
            return None
        ws = w_q.scale if w_q.per_channel else np.full(count, w_q.scale[0])
        want = (np.float32(in_q.s) * ws.astype(np.float32)).astype(np.float64)
        if t in self.fe.qconst:
            data, qp = self.fe.qconst[t]
            data = np.asarray(data).reshape(-1)
            if data.size != count:
                raise _err(n, f"bias '{t}' has {data.size} values for {count} outputs")
            scale = qp.scale if qp.per_channel else np.full(count, qp.scale[0])
            if data.dtype == np.int32 and np.all(qp.zero_point == 0) and \
                    np.allclose(scale, want, rtol=1e-5, atol=0):
                return data.astype(np.int32)
            real = (data.astype(np.float64) - qp.zero_point.astype(np.float64)) * scale
            return np.clip(np.round(real / want), -(2 ** 31), 2 ** 31 - 1).astype(np.int32)
        if t in self.fe.consts:
            b = np.asarray(self.fe.consts[t], np.float64).reshape(-1)
            if b.size == 1 and count > 1:
                b = np.full(count, b[0])
            if b.size != count:
                raise _err(n, f"bias '{t}' has {b.size} values for {count} outputs")
            return np.clip(np.round(b / want), -(2 ** 31), 2 ** 31 - 1).astype(np.int32)
        raise _err(n, f"bias '{t}' must be a constant")

    def operand(self, n: _N, idx: int, out_rank: int) -> str:
        """An activation's IR tensor, or an Add / Mul constant quantized per tensor."""
        t = n.inputs[idx]
        if t in self.map:
            return self.map[t]
        if t in self.fe.qconst:
            data, qp = self.fe.qconst[t]
            if qp.per_channel:
                raise _err(n, f"constant '{t}' is quantized per channel (supported: per-tensor)")
            if data.dtype != np.int8:
                raise _err(n, f"constant '{t}' is {data.dtype} (supported: int8)")
        elif t in self.fe.consts:
            data, qp = quantizer.quantize_const(self.fe.consts[t])
        else:
            raise _err(n, f"input '{t}' is not available")
        data = np.asarray(data)
        if out_rank == 4:
            data = data.reshape((1,) * (4 - data.ndim) + data.shape).transpose(_NHWC)
        return self.const(t, data, "int8", qp)

    # -- driver --------------------------------------------------------------------------
    def run(self) -> Graph:
        fe = self.fe
        for n in fe.nodes:
            fn = getattr(self, f"op_{n.op.strip('_')}", None)
            if fn is None:
                raise _err(n, f"is not supported; supported ONNX operators: {', '.join(SUPPORTED)}")
            fn(n)
        g_inputs = [self.map[x] for x in fe.inputs if x in self.map]
        g_outputs = [self.map[y] for y in fe.outputs]
        nodes = toposort(self.nodes, g_inputs, self.tensors)
        graph = Graph(self.tensors, nodes, g_inputs, g_outputs,
                      name=Path(fe.label).stem if fe.label else "model",
                      meta={"source": fe.label, "format": "onnx", "edge_layout": self.meta_layout,
                            "onnx_qdq": fe.qdq})
        graph.validate()
        return graph

    # -- edges ------------------------------------------------------------------------------
    def op_QUANTIZE_IN(self, n):
        x = n.inputs[0]
        shape = fe_shape = self.fe.shape[x]
        if x not in self.map:
            name = self.new(x, _nhwc(shape), "float32")
            self.map[x] = name
            if len(shape) == 4:
                self.meta_layout["inputs"][name] = (Tensor(x, fe_shape, "float32"), _NHWC)
        self.emit("QUANTIZE", n.name, [self.map[x]], [self.out(n)])

    def op_DEQUANTIZE_OUT(self, n):
        y = n.outputs[0]
        shape = self.fe.shape[n.inputs[0]]
        self.fe.shape[y] = shape
        name = self.new(y, _nhwc(shape), "float32")
        self.map[y] = name
        if len(shape) == 4:
            self.meta_layout["outputs"][name] = (Tensor(y, shape, "float32"), _NCHW)
        self.emit("DEQUANTIZE", n.name, [self.act(n.inputs[0])], [name])

    def op_REQUANT(self, n):
        self.emit("QUANTIZE", n.name, [self.act(n.inputs[0])], [self.out(n)])

    # -- compute ops ------------------------------------------------------------------------
    def op_Conv(self, n):
        fe = self.fe
        x = fe.shape[n.inputs[0]]
        wshape = fe._in(n, 1)
        k, strides, dil, pads, outs = fe._window_attrs(n, x, wshape[2:])
        group = int(n.attrs.get("group", 1))
        cin = x[1]
        xin = self.act(n.inputs[0])
        in_q = self.q(n.inputs[0])
        w, wq = self.weights(n, 1, 0)
        o_ch = w.shape[0]
        if group == 1:
            op, w_ir, w_axis = "CONV_2D", w.transpose(0, 2, 3, 1), 0
        elif group == cin and w.shape[1] == 1:
            op, w_ir, w_axis = "DEPTHWISE_CONV_2D", w.transpose(1, 2, 3, 0), 3
        else:
            raise _err(n, f"grouped convolution with group={group} (supported: 1, or the number of "
                          f"input channels {cin} for depthwise)")
        padding, xin = self._padding(n, xin, x, k, strides, dil, pads, outs, pad_value=None)
        qp = QuantParams(wq.scale, wq.zero_point, w_axis if wq.per_channel else None)
        wt = self.const(n.inputs[1], w_ir, "int8", qp)
        b = self.bias(n, 2, in_q, wq, o_ch)
        ins = [xin, wt] + ([self.const(n.inputs[2], b, "int32")] if b is not None else [])
        attrs = {"padding": padding, "stride": tuple(strides), "dilation": tuple(dil),
                 "activation": n.attrs.get("_activation", "NONE")}
        if op == "DEPTHWISE_CONV_2D":
            attrs["depth_multiplier"] = o_ch // cin
        self.emit(op, n.name, ins, [self.out(n)], attrs)

    def _padding(self, n, xin, x, k, strides, dil, pads, outs, pad_value):
        """SAME / VALID when TFLite's rule gives the ONNX windows, else an explicit PAD."""
        from ..ops.common import window_geometry

        if not any(pads):
            return "VALID", xin
        g = window_geometry("SAME", x[2:], k, strides, dil)
        if (g["out_h"], g["out_w"]) == tuple(outs) and (g["pad_top"], g["pad_left"]) == (pads[0], pads[1]):
            return "SAME", xin
        t = self.tensors[xin]
        paddings = np.array([[0, 0], [pads[0], pads[2]], [pads[1], pads[3]], [0, 0]], np.int32)
        shape = (t.shape[0], t.shape[1] + pads[0] + pads[2], t.shape[2] + pads[1] + pads[3], t.shape[3])
        dst = self.new(f"{xin}:padded", shape, "int8", t.quant)
        pname = self.const(f"{n.name}:paddings", paddings, "int32")
        if pad_value is None:
            self.emit("PAD", f"{n.name}:pad", [xin, pname], [dst])
        else:
            v = self.const(f"{n.name}:pad_value", np.array([pad_value]), "int8", t.quant)
            self.emit("PADV2", f"{n.name}:pad", [xin, pname, v], [dst])
        return "VALID", dst

    def _fc(self, n, w_onnx_axis_out: int, w_is_out_in: bool):
        in_q = self.q(n.inputs[0])
        w, wq = self.weights(n, 1, w_onnx_axis_out)
        if not w_is_out_in:
            w = w.T
        qp = QuantParams(wq.scale, wq.zero_point, 0 if wq.per_channel else None)
        return in_q, w, qp, wq

    def op_Gemm(self, n):
        trans_b = int(n.attrs.get("transB", 0))
        alpha, beta = float(n.attrs.get("alpha", 1.0)), float(n.attrs.get("beta", 1.0))
        if alpha != 1.0 or (beta != 1.0 and len(n.inputs) > 2 and n.inputs[2]):
            if n.inputs[1] in self.fe.qconst:
                raise _err(n, f"alpha={alpha}, beta={beta} (supported: 1 for quantized Gemm)")
            self.fe.consts[n.inputs[1]] = np.asarray(self.fe.consts[n.inputs[1]]) * alpha
            if len(n.inputs) > 2 and n.inputs[2]:
                self.fe.consts[n.inputs[2]] = np.asarray(self.fe.consts[n.inputs[2]]) * beta
        in_q, w, qp, wq = self._fc(n, 0 if trans_b else 1, bool(trans_b))
        self._emit_fc(n, in_q, w, qp, wq)

    def op_MatMul(self, n):
        in_q, w, qp, wq = self._fc(n, 1, False)
        self._emit_fc(n, in_q, w, qp, wq)

    def _emit_fc(self, n, in_q, w, qp, wq):
        wt = self.const(n.inputs[1], w, "int8", qp)
        b = self.bias(n, 2, in_q, wq, w.shape[0]) if n.op == "Gemm" else None
        ins = [self.act(n.inputs[0]), wt] + ([self.const(n.inputs[2], b, "int32")] if b is not None else [])
        self.emit("FULLY_CONNECTED", n.name, ins, [self.out(n)],
                  {"activation": n.attrs.get("_activation", "NONE"),
                   "keep_num_dims": len(self.fe.shape[n.outputs[0]]) > 2})

    def _binary(self, n, op):
        rank = len(self.fe.shape[n.outputs[0]])
        for i in (0, 1):
            t = n.inputs[i]
            if t in self.map and len(self.fe.shape[t]) != rank and rank == 4:
                raise _err(n, f"broadcasting the {len(self.fe.shape[t])}-D activation '{t}' against a "
                              "4-D one (supported: same rank, or a constant operand)")
        a, b = self.operand(n, 0, rank), self.operand(n, 1, rank)
        self.emit(op, n.name, [a, b], [self.out(n)], {"activation": n.attrs.get("_activation", "NONE")})

    def op_Add(self, n):
        self._binary(n, "ADD")

    def op_Mul(self, n):
        self._binary(n, "MUL")

    def op_Relu(self, n):
        """A Relu / Clip that could not be fused (a QDQ pair sits between it and its producer)."""
        act = n.attrs.get("_activation") or self.fe._activation_of(n)
        src = self.act(n.inputs[0])
        prod = next((p for p in reversed(self.nodes) if src in p.outputs), None)
        users = self.consumers.get(n.inputs[0], [])
        if (prod is not None and prod.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL")
                and prod.attrs.get("activation", "NONE") == "NONE" and len(users) == 1
                and n.inputs[0] not in self.fe.outputs):
            prod.attrs["activation"] = act
            self.finish(n, src)
            return
        t = self.tensors[src]
        if len(t.shape) != 4:
            raise _err(n, "a standalone activation on a non-4-D tensor (supported: fused into the "
                          "preceding Conv, Gemm, MatMul, Add or Mul)")
        dst = self.tmp(n, t.shape, t.quant, "act")       # 1x1 max pool = clamp only
        self.emit("MAX_POOL_2D", n.name, [src], [dst],
                  {"padding": "VALID", "stride": (1, 1), "filter": (1, 1), "activation": act})
        self.finish(n, dst)

    op_Clip = op_Relu

    def op_Sigmoid(self, n):
        src = self.act(n.inputs[0])
        t = self.tensors[src]
        dst = self.tmp(n, t.shape, QuantParams(*quantizer.FIXED_SIGMOID_SOFTMAX), "logistic")
        self.emit("LOGISTIC", n.name, [src], [dst])
        self.finish(n, dst)

    def op_Softmax(self, n):
        x = self.fe.shape[n.inputs[0]]
        axis = int(n.attrs.get("axis", -1 if self.fe.opset >= 13 else 1))
        axis = axis + len(x) if axis < 0 else axis
        last = (len(x) == 4 and axis == 1) or (len(x) != 4 and axis == len(x) - 1)
        if not last and not (self.fe.opset < 13 and axis == len(x) - 1):
            raise _err(n, f"softmax over axis {axis} of a {len(x)}-D tensor (supported: the last "
                          "axis, or the channels of an NCHW tensor)")
        if len(x) == 4 and axis == 3 and x[1] != 1:
            raise _err(n, "softmax over the W axis of an NCHW tensor")
        src = self.act(n.inputs[0])
        t = self.tensors[src]
        dst = self.tmp(n, t.shape, QuantParams(*quantizer.FIXED_SIGMOID_SOFTMAX), "softmax")
        self.emit("SOFTMAX", n.name, [src], [dst], {"beta": 1.0})
        self.finish(n, dst)

    def _mean(self, n, axes_onnx, keep):
        x = self.fe.shape[n.inputs[0]]
        src = self.act(n.inputs[0])
        if len(x) == 4:
            axes = sorted(_AXIS_TO_NHWC[a] for a in axes_onnx)
            if not keep:
                kept_ir = [d for d in range(4) if d not in axes]
                kept_onnx = [_AXIS_TO_NHWC[d] for d in range(4) if d not in axes_onnx]
                if kept_ir != kept_onnx:
                    raise _err(n, f"reducing NCHW axes {axes_onnx} without keepdims changes the order "
                                  "of the remaining axes (supported: keepdims=1, or H and W)")
        else:
            axes = list(axes_onnx)
        ax = self.const(f"{n.name}:axes", np.array(axes, np.int32), "int32")
        self.emit("MEAN", n.name, [src, ax], [self.out(n)], {"keep_dims": bool(keep)})

    def op_GlobalAveragePool(self, n):
        x = self.fe.shape[n.inputs[0]]
        self._mean(n, list(range(2, len(x))), True)

    def op_ReduceMean(self, n):
        x = self.fe.shape[n.inputs[0]]
        ax = self.fe._axes(n, len(x))
        self._mean(n, ax if ax is not None else list(range(len(x))), int(n.attrs.get("keepdims", 1)))

    def _pool(self, n, op):
        fe = self.fe
        x = fe.shape[n.inputs[0]]
        k, strides, dil, pads, outs = fe._window_attrs(n, x)
        if any(d != 1 for d in dil):
            raise _err(n, f"dilations {dil} (supported: 1)")
        src = self.act(n.inputs[0])
        t = self.tensors[src]
        from ..ops.common import window_geometry

        g = window_geometry("SAME", x[2:], k, strides)
        if not any(pads) and not int(n.attrs.get("ceil_mode", 0)):
            padding = "VALID"
        elif (g["out_h"], g["out_w"]) == tuple(outs) and (g["pad_top"], g["pad_left"]) == (pads[0], pads[1]) \
                and (op == "MAX_POOL_2D" or not int(n.attrs.get("count_include_pad", 0))):
            padding = "SAME"
        elif op == "MAX_POOL_2D":       # -128 padding never wins a max: same as ignoring it
            padding, src = self._padding(n, src, x, k, strides, dil, pads + [], [-1, -1], pad_value=-128)
        elif int(n.attrs.get("count_include_pad", 0)):   # zeros padded are averaged in
            padding, src = self._padding(n, src, x, k, strides, dil, pads, [-1, -1], pad_value=None)
        else:
            raise _err(n, f"pads {pads} that are not TFLite's SAME padding with count_include_pad=0")
        if padding == "VALID" and int(n.attrs.get("ceil_mode", 0)):
            _, _, _, _, floor_outs = fe._window_attrs(_N(n.op, n.name, n.inputs, n.outputs,
                                                         {**n.attrs, "ceil_mode": 0}), x)
            if floor_outs != outs:
                raise _err(n, "ceil_mode=1 adds a partial window (supported: ceil_mode=0)")
        dst = self.tmp(n, _nhwc(fe.shape[n.outputs[0]]), t.quant, "pool")
        self.emit(op, n.name, [src], [dst], {"padding": padding, "stride": tuple(strides),
                                             "filter": tuple(k), "activation": "NONE"})
        self.finish(n, dst)

    def op_MaxPool(self, n):
        if len(n.outputs) > 1 and n.outputs[1]:
            raise _err(n, "the Indices output (supported: values only)")
        self._pool(n, "MAX_POOL_2D")

    def op_AveragePool(self, n):
        self._pool(n, "AVERAGE_POOL_2D")

    # -- data movement ----------------------------------------------------------------------
    def _reshape_to(self, n, src: str, onnx_in: tuple, onnx_out: tuple) -> str:
        """IR tensors reshaped as ONNX reshapes NCHW data (TRANSPOSE where orders differ)."""
        t = self.tensors[src]

        def trivial(s):
            return len(s) == 4 and (s[1] == 1 or s[2] * s[3] == 1)

        cur = src
        if len(onnx_in) == 4 and not trivial(onnx_in):
            dst = self.new(f"{src}:nchw", onnx_in, "int8", t.quant)
            perm = self.const(f"{n.name}:perm_nchw", np.array(_NCHW, np.int32), "int32")
            self.emit("TRANSPOSE", f"{n.name}:to_nchw", [cur, perm], [dst])
            cur = dst
        if len(onnx_out) == 4 and not trivial(onnx_out):
            mid = self.new(f"{n.outputs[0]}:nchw", onnx_out, "int8", t.quant)
            self.emit("RESHAPE", n.name, [cur], [mid])
            dst = self.tmp(n, _nhwc(onnx_out), t.quant, "nhwc")
            perm = self.const(f"{n.name}:perm_nhwc", np.array(_NHWC, np.int32), "int32")
            self.emit("TRANSPOSE", f"{n.name}:to_nhwc", [mid, perm], [dst])
            return dst
        target = _nhwc(onnx_out)
        if tuple(self.tensors[cur].shape) == tuple(target):
            return cur
        dst = self.tmp(n, target, t.quant, "reshaped")
        self.emit("RESHAPE", n.name, [cur], [dst])
        return dst

    def _reshape_op(self, n):
        src = self.act(n.inputs[0])
        out = self._reshape_to(n, src, self.fe.shape[n.inputs[0]], self.fe.shape[n.outputs[0]])
        self.finish(n, out)

    op_Flatten = op_Reshape = op_Squeeze = op_Unsqueeze = _reshape_op

    def op_Transpose(self, n):
        x = self.fe.shape[n.inputs[0]]
        perm = list(n.attrs.get("perm", list(range(len(x)))[::-1]))
        y = self.fe.shape[n.outputs[0]]
        # IR x_ir = x.transpose(pin); y = x.transpose(perm); y_ir = y.transpose(pout)
        pin = list(_NHWC) if len(x) == 4 else list(range(len(x)))
        pout = list(_NHWC) if len(y) == 4 else list(range(len(y)))
        inv_in = [pin.index(i) for i in range(len(x))]
        comp = [inv_in[perm[p]] for p in pout]
        src = self.act(n.inputs[0])
        t = self.tensors[src]
        if comp == list(range(len(x))):
            self.finish(n, src)
            return
        dst = self.tmp(n, _nhwc(y), t.quant, "transposed")
        pc = self.const(f"{n.name}:perm", np.array(comp, np.int32), "int32")
        self.emit("TRANSPOSE", n.name, [src, pc], [dst])
        self.finish(n, dst)

    def op_Concat(self, n):
        y = self.fe.shape[n.outputs[0]]
        axis = int(n.attrs["axis"])
        axis = axis + len(y) if axis < 0 else axis
        ir_axis = _AXIS_TO_NHWC[axis] if len(y) == 4 else axis
        want = self.q(n.outputs[0])
        ins = []
        for i, t in enumerate(n.inputs):
            if not t:
                continue
            if t not in self.map:
                raise _err(n, f"constant input '{t}' (supported: activations)")
            ins.append(self.requant_to(n, self.act(t), want, f"requant{i}"))
        self.emit("CONCATENATION", n.name, ins, [self.out(n)], {"axis": ir_axis, "activation": "NONE"})

    def op_Pad(self, n):
        mode = n.attrs.get("mode", "constant")
        if mode != "constant":
            raise _err(n, f"mode {mode!r} (supported: constant)")
        x = self.fe.shape[n.inputs[0]]
        pads = self.fe._pads(n, len(x))
        r = len(x)
        pairs = [[pads[i], pads[i + r]] for i in range(r)]
        if r == 4:
            pairs = [pairs[i] for i in _NHWC]
        if self.fe.opset >= 11:
            v = self.fe.const_of(n, 2, "constant_value") if len(n.inputs) > 2 and n.inputs[2] else None
            value = 0.0 if v is None or v.size == 0 else float(v.reshape(-1)[0])
        else:
            value = float(n.attrs.get("value", 0.0))
        src = self.act(n.inputs[0])
        t = self.tensors[src]
        dst = self.tmp(n, _nhwc(self.fe.shape[n.outputs[0]]), t.quant, "padded")
        pname = self.const(f"{n.name}:paddings", np.array(pairs, np.int32), "int32")
        if value == 0.0:
            self.emit("PAD", n.name, [src, pname], [dst])
        else:
            code = quantizer.quantize_values(np.array([value]), t.quant)
            vname = self.const(f"{n.name}:value", code, "int8", t.quant)
            self.emit("PADV2", n.name, [src, pname, vname], [dst])
        self.finish(n, dst)

    def op_Resize(self, n):
        from ..ops.shape_ops import nearest_indices

        mode = n.attrs.get("mode", "nearest")
        if mode != "nearest":
            raise _err(n, f"mode {mode!r} (supported: nearest)")
        x, y = self.fe.shape[n.inputs[0]], self.fe.shape[n.outputs[0]]
        ctm = n.attrs.get("coordinate_transformation_mode", "half_pixel")
        nm = n.attrs.get("nearest_mode", "round_prefer_floor")
        maps = [_onnx_nearest(x[d], y[d], ctm, nm, n) for d in (2, 3)]
        choice = None
        for ac, hp in ((False, False), (False, True), (True, False)):
            if all(np.array_equal(nearest_indices(x[d], y[d], ac, hp), maps[i])
                   for i, d in enumerate((2, 3))):
                choice = (ac, hp)
                break
        if choice is None:
            raise _err(n, f"coordinate_transformation_mode={ctm}, nearest_mode={nm} picks pixels "
                          "TFLite's RESIZE_NEAREST_NEIGHBOR cannot (supported: asymmetric/floor and "
                          "equivalents)")
        src = self.act(n.inputs[0])
        t = self.tensors[src]
        dst = self.tmp(n, _nhwc(y), t.quant, "resized")
        size = self.const(f"{n.name}:size", np.array(y[2:], np.int32), "int32")
        self.emit("RESIZE_NEAREST_NEIGHBOR", n.name, [src, size], [dst],
                  {"align_corners": choice[0], "half_pixel_centers": choice[1]})
        self.finish(n, dst)


def _onnx_nearest(in_size: int, out_size: int, ctm: str, mode: str, n) -> np.ndarray:
    """ONNX Resize (nearest) source index of every output coordinate of one axis."""
    scale = out_size / in_size
    i = np.arange(out_size, dtype=np.float64)
    if ctm == "asymmetric":
        x = i / scale
    elif ctm == "half_pixel":
        x = (i + 0.5) / scale - 0.5
    elif ctm == "pytorch_half_pixel":
        x = (i + 0.5) / scale - 0.5 if out_size > 1 else np.zeros_like(i)
    elif ctm == "align_corners":
        x = i * (in_size - 1) / (out_size - 1) if out_size > 1 else np.zeros_like(i)
    elif ctm == "tf_half_pixel_for_nn":
        x = (i + 0.5) / scale
    else:
        raise _err(n, f"coordinate_transformation_mode {ctm!r}")
    if mode == "floor":
        r = np.floor(x)
    elif mode == "ceil":
        r = np.ceil(x)
    elif mode == "round_prefer_floor":
        r = np.where(x - np.floor(x) == 0.5, np.floor(x), np.round(x))
    elif mode == "round_prefer_ceil":
        r = np.where(x - np.floor(x) == 0.5, np.ceil(x), np.round(x))
    else:
        raise _err(n, f"nearest_mode {mode!r}")
    return np.clip(r, 0, in_size - 1).astype(np.int64)
