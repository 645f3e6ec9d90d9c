"""Seeded synthetic int8 models: every supported op, random quantization, random shapes.

``build(seed)`` writes, with tests/tflite_builder.py, one .tflite model of the kind the
converter and other quantizers produce, drawn from ``np.random.default_rng(seed)``:

* one NHWC image input (int8, or float32 with a QUANTIZE inside), random sizes (21-39);
* a first stage of window ops for fusion and patches to engage: a 3-channel stem CONV_2D
  (kernel 3/5/7, stride 2, SAME, VALID or an explicit PAD the compiler folds), then two or
  three MobileNetV2 blocks (1x1 expand -> depthwise kernel 3/5/7 stride 1/2 -> 1x1 project,
  + ADD when the shapes allow);
* a tail using every other op: a depthwise conv with depth multiplier 2 (dilation 1 or 2),
  a KxK conv, PADV2, MAX_POOL_2D, AVERAGE_POOL_2D, a squeeze-excite block (MEAN, LOGISTIC,
  broadcast MUL), same-shape and broadcast ADD, same-shape MUL, RESIZE_NEAREST_NEIGHBOR,
  CONCATENATION, TRANSPOSE, PAD, RESHAPE, per-channel and per-tensor FULLY_CONNECTED (large
  enough for the DSP kernel), SOFTMAX, LOG_SOFTMAX, an int8 requantizing QUANTIZE, MEAN
  without keep_dims, and a DEQUANTIZE float output;
* random activation scales (some exact powers of two) and zero points (some -128, which the
  depthwise DSP kernel's fast requantization needs), random fused ReLU / ReLU6;
* per-channel weight scales of random sign and kind (:data:`SCALE_KINDS`): ordinary ones
  (picked so that the layer's outputs use the int8 range), negative ones (some with a weight
  -128), ones near 1e-10
  (TFLite's multiplier 0: shift below -31), exact powers of two, ones large enough for a
  multiplier above 1, very small ones with a bias near 2^29 (right shifts of 24-25), channels
  whose weights are all zero or whose huge bias saturates them (constant outputs); per-tensor
  weights on some layers; int32 biases quantized as the converter does (input x weight scale).

Scales are calibrated: ``build`` first measures with TFLM how much each tensor varies over
random inputs and picks the next layer's weight scales for an output spread of OUT_STD LSBs,
so that deep layers (and the outputs) still depend on the input.

``features`` turns kinds off (e.g. ``{"negative"}`` left out) to tell failures apart.
``probe=True`` makes every activation tensor a model output (no fusion, no patches: the
tensors must stay whole), to find the first op that differs.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from tests.tflite_builder import ModelBuilder
from tinyengine import load_model, random_records, run_tflm_many

# per-channel weight scale kinds and how often each is drawn (ordinary channels the rest)
SCALE_KINDS = {"negative": 0.12, "tiny": 0.04, "pow2": 0.10, "large": 0.03, "small": 0.04,
               "zero_weights": 0.03, "saturated": 0.03}
ALL_FEATURES = frozenset(SCALE_KINDS)
UNCLEAN = frozenset({"negative", "tiny", "large"})   # kinds that keep some DSP kernels off
W_RMS = 73.0        # rms of int8 weights uniform in [-127, 127]
OUT_STD = 40.0      # the spread (LSBs) over inputs that output scales aim at


def _out(h: int, k: int, s: int, padding: str, d: int = 1) -> int:
    """Output size along one axis (TFLite SAME / VALID)."""
    if padding == "SAME":
        return -(-h // s)
    return (h - (k - 1) * d - 1) // s + 1


class Synth:
    """A model under construction: tensors with their shapes and quantization."""

    def __init__(self, seed: int, features=ALL_FEATURES, probe: bool = False,
                 measured=None):
        self.seed = seed
        self.measured = measured or {}   # tensor name -> its spread measured with TFLM
        self.rng = np.random.default_rng(seed)
        self.features = frozenset(features)
        self.probe = probe
        self.mb = ModelBuilder(f"tinyengine synthetic int8 model, seed {seed}")
        self.shape: dict = {}
        self.std: dict = {}
        self.q: dict = {}
        self.activations: list = []
        self.outputs: list = []
        self._n = 0

    # -- tensors ------------------------------------------------------------------------------
    def _name(self, tag: str) -> str:
        self._n += 1
        return f"{tag}_{self._n}"

    def act_q(self, zp=None, scale=None) -> tuple:
        rng = self.rng
        if scale is None:
            scale = float(np.exp(rng.uniform(np.log(0.01), np.log(0.25))))
            if rng.random() < 0.25:
                scale = float(2.0 ** np.round(np.log2(scale)))
        if zp is None:
            zp = -128 if rng.random() < 0.3 else int(rng.integers(-60, 61))
        return (scale, int(zp))

    def tensor(self, tag, shape, q, dtype="int8") -> int:
        name = self._name(tag)
        idx = self.mb.tensor(name, shape, dtype,
                             scale=None if q is None else q[0],
                             zero_point=None if q is None else q[1])
        self.shape[idx], self.q[idx] = tuple(shape), q
        # its values' spread over inputs in LSBs (about): the output scales aim at OUT_STD,
        # of which a zero point of -128 (a ReLU-like range) clips about half
        self.std[idx] = OUT_STD if q is None or q[1] != -128 else 0.6 * OUT_STD
        if name in self.measured:
            self.std[idx] = self.measured[name]
        if dtype == "int8":
            self.activations.append(idx)
        return idx

    def const(self, tag, data, dtype, **quant) -> int:
        return self.mb.const(self._name(tag), data, dtype, **quant)

    def padding(self, padding, h, w, k, s, d=1, least=3) -> str:
        """"RANDOM": VALID or SAME at random, VALID only where it leaves ``least`` pixels."""
        if padding != "RANDOM":
            return padding
        valid = min(_out(h, k, s, "VALID", d), _out(w, k, s, "VALID", d)) >= least
        return "VALID" if valid and self.rng.random() < 0.5 else "SAME"

    def act(self) -> str:
        return str(self.rng.choice(["NONE", "RELU", "RELU6"]))

    # -- weights --------------------------------------------------------------------------------
    def weights(self, x, shape, n, axis, fan_in, out_q, per_channel=True, clean=0.35,
                force=None):
        """(int8 weights, float scales, int32 bias) of a layer reading x: n output channels
        along ``axis``; scales give outputs a spread of about OUT_STD LSBs, then per channel a kind
        of SCALE_KINDS (``force``: channel 0's)."""
        in_q = self.q[x]
        rng = self.rng
        w = rng.integers(-127, 128, shape).astype(np.int8)
        acc_std = np.sqrt(fan_in) * self.std[x] * W_RMS
        base = OUT_STD / acc_std * out_q[0] / in_q[0]
        scales = base * np.exp(rng.uniform(np.log(0.5), np.log(2.0), n if per_channel else 1))
        bias = rng.integers(-int(acc_std) // 2, int(acc_std) // 2 + 1, n).astype(np.int64)
        # some layers (``clean``: the fraction) draw only the kinds every kernel takes as it is
        clean = rng.random() < clean
        if per_channel:
            names = list(SCALE_KINDS)
            kind_of = np.searchsorted(np.cumsum([SCALE_KINDS[k] for k in names]), rng.random(n),
                                      side="right")
            if force is not None:
                kind_of[0] = names.index(force)
            # every channel draws the values of every kind, so that leaving a kind out
            # (``features``) changes nothing else in the model
            sign = rng.choice([-1.0, 1.0], n)
            tiny = rng.uniform(0.3, 3.0, n) * 1e-10
            large = rng.uniform(300, 3000, n) * np.sqrt(fan_in)
            small = 2.0 ** -rng.uniform(23.5, 25.0, n) * out_q[0] / in_q[0]
            small_w = rng.choice(np.array([-127, 127], np.int8), shape)
            small_b = rng.integers(-(1 << 29), 1 << 29, n)
            sat_b = rng.integers(1 << 27, 1 << 29, n)
            m128 = rng.random(n) < 0.3        # negative channels holding a weight -128
            m128_at = rng.integers(0, w.size // n, n)
            for c in range(n):
                kind = names[kind_of[c]] if kind_of[c] < len(names) else None
                if kind is None or kind not in self.features or (clean and kind in UNCLEAN):
                    continue
                sl = [slice(None)] * len(shape)
                sl[axis] = c
                sl = tuple(sl)
                if kind == "negative":
                    scales[c] = -scales[c]
                    if m128[c]:      # (negating the channel at compile time cannot hold it)
                        w[sl].flat[m128_at[c]] = -128
                elif kind == "tiny":
                    scales[c] = sign[c] * tiny[c]
                elif kind == "pow2":
                    scales[c] = float(2.0 ** np.round(np.log2(scales[c])))
                elif kind == "large":
                    scales[c] *= large[c]
                elif kind == "small":
                    # a right shift of 24-25, a bias near 2^29 and weights +-127: with a few
                    # hundred inputs the output still varies (by about one LSB), with a
                    # rounding constant above 2^30 when the output zero point is far from 0
                    # (te_dsp.h's TE_RQ_POST_OFFSET)
                    scales[c] = small[c]
                    bias[c] = small_b[c]
                    w[sl] = small_w[sl]
                elif kind == "zero_weights":
                    w[sl] = 0
                elif kind == "saturated":
                    bias[c] = int(sign[c]) * int(sat_b[c])
        scales = scales.astype(np.float32)
        return w, scales, np.clip(bias, -(1 << 31), (1 << 31) - 1).astype(np.int32)

    def bias(self, tag, b, w_scales, x) -> int:
        """int32 bias quantized as the converter does: scale input scale x weight scale."""
        bs = (np.float32(self.q[x][0]) * np.asarray(w_scales, np.float32)).astype(np.float32)
        return self.const(tag, b, "int32", scale=bs, zero_point=np.zeros(bs.size, np.int64))

    # -- ops --------------------------------------------------------------------------------------
    def conv(self, x, out_c, k, stride=1, padding="SAME", dil=1, act=None, per_channel=True,
             out_q=None) -> int:
        n, h, w, c = self.shape[x]
        padding = self.padding(padding, h, w, k, stride, dil)
        oh, ow = _out(h, k, stride, padding, dil), _out(w, k, stride, padding, dil)
        out_q = out_q or self.act_q()
        wt, s, b = self.weights(x, (out_c, k, k, c), out_c, 0, k * k * c, out_q, per_channel)
        wi = self.const("w", wt, "int8", scale=s, zero_point=np.zeros(s.size, np.int64),
                        quantized_dimension=0)
        bi = self.bias("b", b, s, x)
        y = self.tensor("conv", (n, oh, ow, out_c), out_q)
        self.mb.op("CONV_2D", [x, wi, bi], [y], padding=padding, stride_h=stride,
                   stride_w=stride, dilation_h_factor=dil, dilation_w_factor=dil,
                   fused_activation_function=act or self.act())
        return y

    def dw(self, x, k, stride=1, padding="SAME", mult=1, dil=1, act=None, out_q=None,
           clean=0.35) -> int:
        n, h, w, c = self.shape[x]
        padding = self.padding(padding, h, w, k, stride, dil)
        oh, ow = _out(h, k, stride, padding, dil), _out(w, k, stride, padding, dil)
        out_q = out_q or self.act_q()
        wt, s, b = self.weights(x, (1, k, k, c * mult), c * mult, 3, k * k, out_q, clean=clean)
        wi = self.const("dw_w", wt, "int8", scale=s, zero_point=np.zeros(s.size, np.int64),
                        quantized_dimension=3)
        bi = self.bias("dw_b", b, s, x)
        y = self.tensor("dw", (n, oh, ow, c * mult), out_q)
        self.mb.op("DEPTHWISE_CONV_2D", [x, wi, bi], [y], padding=padding, stride_h=stride,
                   stride_w=stride, depth_multiplier=mult, dilation_h_factor=dil,
                   dilation_w_factor=dil, fused_activation_function=act or self.act())
        return y

    def fc(self, x, out_f, per_channel=True, act=None, out_q=None, **kinds) -> int:
        in_f = self.shape[x][-1]
        batches = int(np.prod(self.shape[x][:-1]))
        out_q = out_q or self.act_q()
        wt, s, b = self.weights(x, (out_f, in_f), out_f, 0, in_f, out_q, per_channel, **kinds)
        wi = self.const("fc_w", wt, "int8", scale=s if per_channel else float(s[0]),
                        zero_point=np.zeros(s.size, np.int64), quantized_dimension=0)
        bi = self.bias("fc_b", b, s, x)
        y = self.tensor("fc", (batches, out_f), out_q)
        self.mb.op("FULLY_CONNECTED", [x, wi, bi], [y], fused_activation_function=act or self.act())
        return y

    def binary(self, op, a, b, out_q=None, act=None) -> int:
        sa, sb = self.shape[a], self.shape[b]
        shape = tuple(np.broadcast_shapes(sa, sb))
        if out_q is None:
            sc = self.q[a][0] * self.q[b][0] * self.std[a] * self.std[b] / OUT_STD \
                if op == "MUL" else \
                max(self.q[a][0], self.q[b][0]) * float(self.rng.uniform(0.8, 2.0))
            out_q = self.act_q(scale=sc)
        y = self.tensor(op.lower(), shape, out_q)
        self.mb.op(op, [a, b], [y], fused_activation_function=act or self.act())
        return y

    def same_q(self, op, x, shape, extra=(), **options) -> int:
        y = self.tensor(op.lower(), shape, self.q[x])
        self.std[y] = self.std[x]
        self.mb.op(op, [x, *extra], [y], **options)
        return y

    def pool(self, op, x, k, stride, padding) -> int:
        n, h, w, c = self.shape[x]
        padding = self.padding(padding, h, w, k, stride, least=1)
        return self.same_q(op, x, (n, _out(h, k, stride, padding), _out(w, k, stride, padding), c),
                           padding=padding, stride_h=stride, stride_w=stride, filter_height=k,
                           filter_width=k, fused_activation_function="NONE")

    def pad(self, x, pads, value=None) -> int:
        shape = tuple(d + a + b for d, (a, b) in zip(self.shape[x], pads))
        pi = self.const("pads", np.asarray(pads), "int32")
        if value is None:
            return self.same_q("PAD", x, shape, [pi])
        s, zp = self.q[x]
        vi = self.const("pad_value", np.array([value]), "int8", scale=s, zero_point=zp)
        return self.same_q("PADV2", x, shape, [pi, vi])

    def mean(self, x, axes, keep, out_q=None) -> int:
        shape = [d for i, d in enumerate(self.shape[x]) if i not in axes or keep]
        shape = [1 if (i in axes and keep) else d for i, d in enumerate(shape)]
        ai = self.const("axes", np.asarray(axes), "int32")
        y = self.tensor("mean", shape, out_q or self.act_q())
        self.mb.op("MEAN", [x, ai], [y], keep_dims=keep)
        return y

    def unary(self, op, x, out_q, **options) -> int:
        y = self.tensor(op.lower(), self.shape[x], out_q)
        self.mb.op(op, [x], [y], **options)
        return y

    def output(self, t) -> None:
        self.outputs.append(t)

    # -- the model --------------------------------------------------------------------------------
    def block(self, x, k, stride, expand, out_c, padding) -> int:
        """MobileNetV2: 1x1 expand -> depthwise -> 1x1 project (+ ADD when shapes match)."""
        rng = self.rng
        c = self.shape[x][3]
        e = self.conv(x, c * expand, 1, act=str(rng.choice(["RELU", "RELU6"])))
        # zero point -128 and no clamp below it: the depthwise DSP kernel's fast requantization
        d = self.dw(e, k, stride, padding, act=str(rng.choice(["NONE", "RELU"])),
                    out_q=self.act_q(zp=-128) if rng.random() < 0.6 else None, clean=0.6)
        p = self.conv(d, out_c, 1, act="NONE")
        if self.shape[p] == self.shape[x]:
            p = self.binary("ADD", p, x)
        return p

    def build(self) -> bytes:
        rng = self.rng
        h, w = (int(v) for v in rng.integers(21, 40, 2))
        float_in = rng.random() < 0.3
        x = self.tensor("x", (1, h, w, 3), self.act_q())
        self.std[x] = 73.6      # random inputs over all of int8
        inp = x
        if float_in:
            inp = self.tensor("x_float", (1, h, w, 3), None, dtype="float32")
            self.mb.op("QUANTIZE", [inp], [x])
        # stem: the first (3-channel) layer
        k = int(rng.choice([3, 5, 7]))
        c1 = int(rng.choice([8, 12, 16]))
        stem = str(rng.choice(["RANDOM", "PAD"]))
        if stem == "PAD":
            p = k // 2
            x = self.pad(x, [(0, 0), (p, p), (p, p), (0, 0)])
            stem = "VALID"
        t = self.conv(x, c1, k, 2, stem, act=str(rng.choice(["RELU", "RELU6", "NONE"])))
        # MobileNetV2 blocks
        strides = [2, 1] + ([int(rng.choice([1, 2]))] if rng.random() < 0.5 else [])
        expands = [6, int(rng.choice([2, 3])), int(rng.choice([2, 3]))]
        for s, e in zip(strides, expands):
            _, th, tw, c = self.shape[t]
            s = s if min(th, tw) >= 8 else 1     # keep a few pixels for the tail
            out_c = c if s == 1 and rng.random() < 0.7 else int(rng.choice([c, c + 4, c + 5]))
            t = self.block(t, int(rng.choice([3, 3, 5, 7])), s, e,
                           out_c, "RANDOM" if s > 1 else "SAME")
        self.tail(t)
        self.mb.inputs([inp])
        outs = self.outputs
        if self.probe:
            outs = list(dict.fromkeys(self.activations[1 if not float_in else 0:] + outs))
        self.mb.outputs(outs)
        return self.mb.build()

    def tail(self, t) -> None:
        rng = self.rng
        n, h, w, c = self.shape[t]
        # depthwise with depth multiplier 2 (the portable kernel on every target)
        d2 = self.dw(t, int(rng.choice([3, 5])), 2 if min(h, w) >= 6 else 1, "SAME", mult=2,
                     dil=int(rng.choice([1, 2])))
        n, h, w, c = self.shape[d2]
        # a KxK convolution (dilation on some), then PADV2 + MAX_POOL and AVERAGE_POOL
        g = self.conv(d2, int(rng.choice([6, 8, 11])), int(rng.choice([3, 5])), 1,
                      "RANDOM", dil=int(rng.choice([1, 1, 2])), per_channel=rng.random() < 0.6)
        _, gh, gw, gc = self.shape[g]
        s, zp = self.q[g]
        pv = self.pad(g, [(0, 0), (1, 0), (0, 1), (0, 0)], value=int(rng.integers(-128, 128)))
        mp = self.pool("MAX_POOL_2D", pv, int(rng.choice([2, 3])), int(rng.choice([1, 2])),
                       "RANDOM")
        ap = self.pool("AVERAGE_POOL_2D", g, int(rng.choice([2, 3])), int(rng.choice([1, 2])),
                       "SAME")
        # squeeze-excite: MEAN -> LOGISTIC -> broadcast MUL; ADD same-shape and broadcast
        m = self.mean(mp, [1, 2], True, out_q=self.act_q(scale=self.q[mp][0] * rng.uniform(0.2, 0.6)))
        gate = self.unary("LOGISTIC", m, (1 / 256, -128))
        se = self.binary("MUL", mp, gate, out_q=self.act_q(scale=self.q[mp][0] * 0.7))
        res = self.binary("ADD", se, mp)
        bc = self.binary("ADD", res, m)
        sq = self.binary("MUL", bc, res)
        # resize, concatenation (the two inputs share the output's quantization), transpose
        _, rh, rw, rc = self.shape[sq]
        size = (rh + int(rng.integers(1, 4)), rw + int(rng.integers(0, 3)))
        r = self.same_q("RESIZE_NEAREST_NEIGHBOR", sq, (1, *size, rc),
                        [self.const("size", np.array(size), "int32")],
                        half_pixel_centers=bool(rng.random() < 0.5))
        r2 = self.same_q("RESIZE_NEAREST_NEIGHBOR", ap, (1, *size, gc),
                         [self.const("size", np.array(size), "int32")])
        r2q = self.unary("QUANTIZE", r2, self.q[r])     # int8 -> int8 requantization
        cat = self.same_q("CONCATENATION", r, (1, *size, rc + gc), [r2q], axis=3,
                          fused_activation_function="NONE")
        perm = [0, 2, 1, 3]
        tr = self.same_q("TRANSPOSE", cat, tuple(self.shape[cat][i] for i in perm),
                         [self.const("perm", np.array(perm), "int32")])
        self.output(tr)          # also read by PAD: an output that stays live
        pd = self.pad(tr, [(0, 0), (0, 1), (1, 0), (0, 0)])
        flat = int(np.prod(self.shape[pd]))
        rs = self.same_q("RESHAPE", pd, (1, flat), [self.const("shape", np.array([1, flat]), "int32")])
        # classifier: per-channel (DSP-sized) and per-tensor FULLY_CONNECTED, three heads
        # (its channel 0 "small": hundreds of inputs keep it from being constant)
        zp = int(rng.choice([-1, 1]) * rng.integers(64, 90))     # R = (2 zp + 1) 2^23 > 2^30
        f1 = self.fc(rs, int(rng.choice([16, 24, 33])), per_channel=True, out_q=self.act_q(zp=zp),
                     act="NONE", clean=1.0, force="small")
        f2 = self.fc(f1, int(rng.choice([7, 10])), per_channel=False, act="NONE")
        logits_q = self.q[f2]
        if logits_q[0] < 0.05:      # SOFTMAX / LOG_SOFTMAX need a scale away from 0
            f2 = self.unary("QUANTIZE", f2, self.act_q(scale=float(rng.uniform(0.05, 0.3))))
        self.output(self.unary("SOFTMAX", f2, (1 / 256, -128), beta=1.0))
        self.output(self.unary("LOG_SOFTMAX", f2, (16 / 256, 127)))
        rq = self.unary("QUANTIZE", f2, self.act_q())
        deq = self.tensor("logits_float", self.shape[rq], None, dtype="float32")
        self.mb.op("DEQUANTIZE", [rq], [deq])
        self.output(deq)
        self.output(self.mean(d2, [1, 2], False))


def _spreads(data: bytes, seed: int) -> dict:
    """Every activation tensor's spread over 8 random inputs (std, averaged over its elements,
    at least 1 LSB), from TFLM on ``data`` (a probe model: every activation an output)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "probe.tflite"
        path.write_bytes(data)
        g = load_model(path)
    outs = run_tflm_many(data, random_records(g, 8, seed))
    return {name: max(1.0, float(np.mean(np.std(np.stack([np.asarray(o[i], np.float64)
                                                             for o in outs]), axis=0))))
            for i, name in enumerate(g.outputs)}


def build(seed: int, features=ALL_FEATURES, probe: bool = False, calibration: int = 3) -> bytes:
    """The model of ``seed``; ``calibration`` passes first measure (TFLM) how much each tensor
    varies over random inputs, so that the next layer's weight scales make its output vary by
    about OUT_STD LSBs (the estimates alone fade deep in the network)."""
    measured: dict = {}
    for _ in range(calibration):
        measured = _spreads(Synth(seed, features, True, measured).build(), seed)
    return Synth(seed, features, probe, measured).build()
