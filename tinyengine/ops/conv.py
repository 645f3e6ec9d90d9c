"""CONV_2D and DEPTHWISE_CONV_2D (int8 activations, int8 weights, int32 bias).

Arithmetic of TFLite Micro's reference kernels (``reference_integer_ops::ConvPerChannel``
and ``DepthwiseConvPerChannel``)::

    acc = sum over in-bounds taps of w * (x + input_offset)     (int32)
    acc += bias[oc]                                               (if bias)
    y   = clamp(MultiplyByQuantizedMultiplier(acc, M[oc], S[oc]) + output_zero_point)

with ``input_offset = -input_zero_point``; taps in the padding are skipped, which is the
same as reading ``input_zero_point`` there.  TFLM treats per-tensor weights as per-channel
with one repeated scale; M/S come from ``double(in_scale) * double(w_scale) /
double(out_scale)``.  Weight zero points are not used by TFLM (they must be 0).

The C kernels get ``acc_init[oc] = bias[oc] + input_offset * sum(w[oc])`` folded at
compile time and read ``input_zero_point`` for padded taps, so their inner loop is a
plain dot product; the sums are equal modulo 2^32, hence bit-exact.
"""
from __future__ import annotations

import numpy as np

from tinyengine.ops import OpDef, register, target_of, unsupported
from tinyengine.ops.chanpack import ChannelParams
from tinyengine.ops.common import (act_bounds, c_i32, fold_input_offset, is_padding,
                                    require_int8, window_geometry)
from tinyengine.quant import (multiply_by_quantized_multiplier,
                              multiply_by_quantized_multiplier_int as mbqm, quantize_multiplier_array,
                              tflite_scale, wrap_int32)


def int_pair(v, default=(1, 1)) -> tuple:
    if v is None:
        return tuple(default)
    if isinstance(v, (int, np.integer)):
        return (int(v), int(v))
    return (int(v[0]), int(v[1]))


def per_channel_multipliers(in_scale: float, w_scales, out_scale: float, n: int) -> tuple:
    """(multiplier, shift) int32 arrays of n output channels, as TFLite Micro computes them for
    CONV_2D and DEPTHWISE_CONV_2D (kernel_util.cc PopulateConvolutionQuantizationParams, one
    weight scale broadcast to every channel) and per-channel FULLY_CONNECTED
    (fully_connected_common.cc CalculateOpDataFullyConnected):
    ``QuantizeMultiplier((double)in_scale * (double)w_scale[c] / (double)out_scale)``,
    left to right, each scale the model's float32 widened to double.  A negative weight scale
    gives a negative multiplier, as in TFLite Micro.
    """
    w_scales = np.atleast_1d(np.asarray(w_scales, dtype=np.float32)).astype(np.float64)
    if w_scales.size == 1:
        w_scales = np.full(n, w_scales[0])
    real = tflite_scale(in_scale) * w_scales / tflite_scale(out_scale)   # double ops, per channel
    return quantize_multiplier_array(real)


def requantize(acc, bias, mult, shift, out_zp, act_min, act_max) -> np.ndarray:
    """int32 accumulator (+bias) -> int8, broadcast over the last (channel) axis."""
    acc = wrap_int32(acc)
    if bias is not None:
        acc = wrap_int32(acc + np.asarray(bias, dtype=np.int64))
    y = multiply_by_quantized_multiplier(acc, mult.astype(np.int64), shift.astype(np.int64))
    y = y + out_zp
    return np.clip(y, act_min, act_max).astype(np.int8)


def pad_for_windows(x, g, k_hw, stride, dil, value) -> np.ndarray:
    """Pad NHWC x with `value` so that every window of the output grid is in range."""
    n, h, w, c = x.shape
    need_h = (g["out_h"] - 1) * stride[0] + (k_hw[0] - 1) * dil[0] + 1
    need_w = (g["out_w"] - 1) * stride[1] + (k_hw[1] - 1) * dil[1] + 1
    bottom = max(0, need_h - h - g["pad_top"])
    right = max(0, need_w - w - g["pad_left"])
    return np.pad(x, ((0, 0), (g["pad_top"], bottom), (g["pad_left"], right), (0, 0)),
                  constant_values=value)


def window_tap(xp, ky, kx, g, stride, dil) -> np.ndarray:
    """The input pixels tap (ky, kx) reads for every output position: [N, OH, OW, C]."""
    y0, x0 = ky * dil[0], kx * dil[1]
    return xp[:, y0:y0 + (g["out_h"] - 1) * stride[0] + 1:stride[0],
              x0:x0 + (g["out_w"] - 1) * stride[1] + 1:stride[1], :]


# -- DSP kernels (Cortex-M4/M7): compile-time data layouts -------------------------------------
def pack_weights_dsp(w2d) -> np.ndarray:
    """[rows, K] int8 weights -> the layout of te_conv_2d_mat_mult_s8_dsp.h.

    Each row is zero-padded to 4 * ceil(K / 4) values; rows go in pairs (2p, 2p+1) with their
    groups of 4 interleaved (4 bytes of row 2p, then 4 of row 2p+1); an odd last row follows
    on its own.  The result has rows * 4 * ceil(K / 4) bytes.
    """
    return interleave_rows(w2d, 2)


def interleave_rows(w2d, r: int) -> np.ndarray:
    """[rows, K] int8 -> rows zero-padded to 4 * ceil(K / 4) values, in blocks of r rows whose
    groups of 4 values are interleaved (4 bytes of each row of the block in turn); the
    rows % r last rows follow one after the other."""
    w2d = np.asarray(w2d, dtype=np.int8)
    rows, k = w2d.shape
    k4 = (k + 3) // 4
    padded = np.zeros((rows, 4 * k4), dtype=np.int8)
    padded[:, :k] = w2d
    blocks = rows // r
    body = padded[:r * blocks].reshape(blocks, r, k4, 4).transpose(0, 2, 1, 3).reshape(-1)
    return np.ascontiguousarray(np.concatenate([body, padded[r * blocks:].reshape(-1)]))


# te_dsp.h's requantization mode bits
RQ_FAST = 1
RQ_FULL_RANGE = 2
RQ_POST_OFFSET = 4
# what a DSP conv / depthwise kernel's te_conv_args entry point (X_call) needs
CALL_SOURCES = ("te_conv_args.c", "te_unpack_channels.c")


# A node attribute (set by tinytrain, never by a frontend): the layer's bias changes at run
# time, so prepare() keeps the DSP kernels' tables valid for any bias whose accumulator stays
# below 2^30 in magnitude (the caller checks that after each change) and folds nothing that
# depends on the bias's value.
ACC_INIT_VARIES = "acc_init_varies"


def acc_bound(acc_init, w2d, x_max: int = 128) -> np.ndarray:
    """Per output channel o, max |accumulator|: |acc_init[o]| + x_max * sum_k |w[o, k]|, for
    inputs of magnitude at most ``x_max`` (int8: 128)."""
    w = np.abs(np.asarray(w2d, dtype=np.int64).reshape(len(acc_init), -1)).sum(axis=1)
    return np.abs(np.asarray(acc_init, dtype=np.int64)) + int(x_max) * w


def fold_negative_multipliers(acc_init, w2d, mult, shift, bound) -> tuple:
    """(acc_init, w2d, mult) with the sign of each negative multiplier moved into its channel's
    accumulator: weights, accumulator start (bias) and multiplier negated, where exact.

    A negative per-channel weight scale (quantizers other than TensorFlow's make them) gives a
    negative TFLite multiplier m.  TFLite's result RoundingDivideByPOT(SRDHM(x, m), e) depends
    on x and m only through the product x * m (SRDHM(x, m) = floor((x m + 2^30) / 2^31); it
    saturates only for x = m = -2^31), so (-x, -m) gives the same output bit for bit wherever
    -x and -m are int32 and x is never -2^31.  The channel's accumulator x = acc_init +
    sum_k w[k] v[k] is linear in (acc_init, w), so negating both negates it (mod 2^32, exactly
    while |x| < 2^31).  Folded where m is negative and not -2^31, no weight is -128 (its
    negation is no int8) and ``bound`` (max |x|, per channel or one for all) times the left
    shift 2^max(shift, 0) is below 2^31.  Then the DSP kernels' fast requantization (which
    needs m > 0) serves the channel as it does any other.  Other negative channels keep their
    values (the kernels' general requantization handles them)."""
    acc = np.asarray(acc_init, dtype=np.int64).ravel().copy()
    mult = np.asarray(mult, dtype=np.int64).ravel().copy()
    shift = np.broadcast_to(np.asarray(shift, dtype=np.int64).ravel(), mult.shape)
    w = np.asarray(w2d).reshape(acc.size, -1)
    bound = np.broadcast_to(np.asarray(bound, dtype=np.int64).ravel(), mult.shape)
    lifted = bound << np.clip(shift, 0, 32)
    flip = ((mult < 0) & (mult != -(1 << 31)) & (lifted < (1 << 31))
            & (w.min(axis=1, initial=0) > -128))
    if not flip.any():
        return acc, np.asarray(w2d), mult
    w = w.astype(np.int16)
    w[flip] = -w[flip]
    acc[flip] = -acc[flip]
    mult[flip] = -mult[flip]
    return acc, w.astype(np.int8).reshape(np.shape(w2d)), mult


def srdhm_may_saturate(mult, shift, bound) -> bool:
    """Whether some channel has the multiplier -2^31 and an accumulator that (times the left
    shift 2^max(shift, 0)) may reach -2^31 (``bound``: max |acc|): SaturatingRoundingDoubling-
    HighMul's one saturating case, which te_dsp.h's te_requant_dsp leaves out (checking it
    would cost every general-path output two instructions); such a layer keeps its portable
    kernel."""
    m, s, b = np.broadcast_arrays(*(np.asarray(v, dtype=np.int64).ravel()
                                    for v in (mult, shift, bound)))
    return bool(np.any((m == -(1 << 31)) & ((b << np.clip(s, 0, 32)) >= (1 << 31))))


def constant_channels(acc_init, w2d, mult, shift, x_range=(-128, 127), clamp=None) -> tuple:
    """(mask, k): the channels whose output is the same for every input, and that output as
    k = MultiplyByQuantizedMultiplier(acc, m, s) (the value before the output offset).

    A channel's accumulator is acc_init + sum_t w[t] x[t] with every x[t] in ``x_range``
    (padded taps included: they read a value inside it), so it lies in [lo, hi] with
    lo/hi the sum of each term's smallest/largest value.  MultiplyByQuantizedMultiplier is
    non-decreasing in acc (m >= 0), so the output is constant where it is equal at lo and hi
    (all-zero weights: lo = hi), or where ``clamp`` = (output_offset, act_min, act_max) is
    given and the clamp saturates both ends to the same bound.  Only where [lo, hi] stays in
    int32 (TFLite's accumulator) and the shift is a right shift (no left-shift overflow).
    """
    acc = np.asarray(acc_init, dtype=np.int64).ravel()
    w = np.asarray(w2d, dtype=np.int64).reshape(acc.size, -1)
    mult = np.broadcast_to(np.asarray(mult, dtype=np.int64).ravel(), acc.shape)
    shift = np.broadcast_to(np.asarray(shift, dtype=np.int64).ravel(), acc.shape)
    x0, x1 = int(x_range[0]), int(x_range[1])
    lo = acc + np.minimum(w * x0, w * x1).sum(axis=1)
    hi = acc + np.maximum(w * x0, w * x1).sum(axis=1)
    zero = ~np.any(w != 0, axis=1)
    ok = (lo >= -(1 << 31)) & (hi < (1 << 31)) & (shift <= 0) & (mult >= 0)
    safe = lambda v: np.where(ok, v, 0)
    k_lo = np.asarray(multiply_by_quantized_multiplier(safe(lo), mult, shift), dtype=np.int64)
    k_hi = np.asarray(multiply_by_quantized_multiplier(safe(hi), mult, shift), dtype=np.int64)
    k_zero = np.asarray(multiply_by_quantized_multiplier(wrap_int32(acc), mult, shift),
                        dtype=np.int64)
    const = zero | (ok & (k_lo == k_hi))
    k = np.where(zero, k_zero, k_lo)
    if clamp is not None:
        off, a0, a1 = (int(v) for v in clamp)
        y_lo, y_hi = np.clip(k_lo + off, a0, a1), np.clip(k_hi + off, a0, a1)
        sat = ok & ~const & (y_lo == y_hi)
        const |= sat
        k = np.where(sat, y_lo - off, k)
    return const, k


def fold_constant_channels(acc_init, w2d, mult, shift, depthwise: bool = False,
                           x_range=(-128, 127), clamp=None) -> tuple:
    """(acc_init, mult, shift, w2d) with every constant channel (constant_channels: all-zero
    weights, or an output the same for every input) given all-zero weights and an
    accumulator start with the (m, s) of another channel of the layer that gives its
    constant, or (4k, 2^30, -1) if no channel has a multiplier in [2^30, 2^31) and s in
    [-31, -1], or (0, 0, s) where k = 0.

    Its accumulator is then acc_init whatever the input, so it outputs k + output_offset
    (clamped), k = te_mbqm(acc_init, m, s); (4k, 2^30, -1) gives the same k (SRDHM(4k, 2^30)
    = 2k, RoundingDivideByPOT(2k, 1) = k) with a small accumulator, which keeps
    te_requant_fast_dsp's |acc| < 2^30 (k is clipped to +-300: the clamp saturates the same
    way); another channel's (m, s) and an accumulator x with te_mbqm(x, m, s) = k do too and
    keep the layer's multipliers, shifts and accumulator starts in their ranges (and in
    chanpack's multiplier codes): k = 0 is (0, m, s).
    ``depthwise``: for te_depthwise_conv_2d_s8_dsp, which takes no zero multiplier and needs
    s <= -2: reference channels with s <= -2 only (channels without a reference keep their
    values and weights).  ``x_range`` and ``clamp``: see constant_channels.
    """
    acc = np.asarray(acc_init, dtype=np.int64).copy()
    mult = np.asarray(mult, dtype=np.int64).ravel().copy()
    shift = np.asarray(shift, dtype=np.int64).ravel().copy()
    w = np.asarray(w2d).reshape(acc.size, -1)
    const, kk = constant_channels(acc, w, mult, shift, x_range, clamp)
    if not const.any():
        return acc, mult, shift, np.asarray(w2d)
    w = w.copy()
    ref = np.flatnonzero(~const & (mult >= 1 << 30) & (shift <= (-2 if depthwise else -1))
                         & (shift >= -31))
    # the live channels with the largest m 2^s first: their preimages are the smallest
    ref = ref[np.argsort(-(mult[ref].astype(np.float64) * np.exp2(shift[ref])), kind="stable")]
    for i in np.flatnonzero(const).tolist():
        k = int(np.clip(kk[i], -300, 300))
        folded = None
        if not depthwise:
            folded = (0, 0, int(shift[i])) if k == 0 else (4 * k, 1 << 30, -1)
        for j in ref[:8].tolist():   # a live channel's (m, s), with an accumulator that gives k
            x = 0 if k == 0 else _preimage(k, int(mult[j]), int(shift[j]))
            if x is not None:
                folded = (x, int(mult[j]), int(shift[j]))
                break
        if folded is not None:
            acc[i], mult[i], shift[i] = folded
            w[i] = 0
    return acc, mult, shift, w.reshape(np.shape(w2d))


def _preimage(k: int, m: int, s: int):
    """The smallest x with |x| < 2^30 and te_mbqm(x, m, s) = k, or None, for m in [2^30, 2^31)
    and s <= -1 (where te_mbqm is non-decreasing in x with slope < 1)."""
    lo, hi = -(1 << 30) + 1, (1 << 30) - 1
    if not mbqm(lo, m, s) <= k <= mbqm(hi, m, s):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if mbqm(mid, m, s) >= k:
            hi = mid
        else:
            lo = mid + 1
    return lo if mbqm(lo, m, s) == k else None


def requant_dsp(mult, shift, bound, output_offset: int, act_min: int,
                act_max: int) -> tuple:
    """(mult int32, rshift int8, mode): te_dsp.h's compact requantization, 5 bytes a channel.

    rshift = e = -shift.  mode has RQ_FULL_RANGE when the activation bounds are [-128, 127],
    and RQ_FAST when every channel meets te_requant_fast_dsp's preconditions given |acc| <=
    bound (acc_bound's per-channel array, or one value for all) (with RQ_POST_OFFSET when some rounding constant R = (2 output_offset + 1) 2^(e-1)
    would be too large, so that the offset is added after the shift); channels that give
    output_offset for every such acc (m = 0, or bound * |m| < 2^(30+e) - 2^30, which makes
    TFLite's result 0) are stored with m = 0 (and the smallest e of the other channels) so
    that they do; those whose accumulator is always 0 (bound 0: fold_constant_channels' k = 0
    channels) keep a valid (m, e), which gives output_offset too and keeps the layer's ranges.
    Without RQ_FAST the arrays hold TFLite's (multiplier, -shift) unchanged.
    """
    mult = np.asarray(mult, dtype=np.int64).ravel()
    shift = np.asarray(shift, dtype=np.int64).ravel()
    mode = RQ_FULL_RANGE if (act_min, act_max) == (-128, 127) else 0
    fast_m, fast_e = mult.copy(), -shift
    bound = np.broadcast_to(np.asarray(bound, dtype=np.int64), mult.shape).tolist()
    fast, post = True, False
    dead = []
    for i, (m, s, b) in enumerate(zip(mult.tolist(), shift.tolist(), bound)):
        e = -s
        fast_ok = (1 << 30) <= m < (1 << 31) and 1 <= e <= 31 and b < (1 << 30)
        if m == 0 or (e >= 1 and b * abs(m) < (1 << (30 + e)) - (1 << 30)
                      and not (b == 0 and fast_ok)):
            dead.append(i)                       # the output is output_offset (any acc)
            continue
        if not fast_ok:
            fast = False
        elif abs((2 * output_offset + 1) << (e - 1)) >= (1 << 30) - 2:
            post = True
    if fast:
        # a dead channel gives output_offset with m = 0 and any e in [1, 31]: the smallest e
        # of the live ones keeps the layer's shift range (and R's bound) as it is
        live = np.setdiff1d(np.arange(mult.size), dead)
        fast_m[dead] = 0
        fast_e[dead] = fast_e[live].min() if live.size else 1
        return (c_i32(fast_m), fast_e.astype(np.int8),
                mode | RQ_FAST | (RQ_POST_OFFSET if post else 0))
    return c_i32(mult), (-shift).astype(np.int8), mode


def dsp_k4(k: int) -> int:
    """Groups of 4 column values of the DSP stage (te_conv_2d_mat_mult_s8_dsp.h)."""
    return (int(k) + 3) // 4


class ConvBase(OpDef):
    """What CONV_2D and DEPTHWISE_CONV_2D share: attrs, geometry, quantization."""

    weight_qdim = 0

    def _attrs(self, node) -> tuple:
        a = node.attrs
        padding = a.get("padding", "VALID")
        return padding, int_pair(a.get("stride")), int_pair(a.get("dilation"))

    def _geometry(self, node, graph) -> dict:
        x = graph.tensor(node.inputs[0])
        w = graph.tensor(node.inputs[1])
        padding, stride, dil = self._attrs(node)
        return window_geometry(padding, x.shape[1:3], w.shape[1:3], stride, dil)

    def _check_common(self, node, graph, out_c: int) -> None:
        if len(node.inputs) < 2 or node.inputs[0] is None or node.inputs[1] is None:
            raise unsupported(node, "needs an input and a weight tensor")
        x = graph.tensor(node.inputs[0])
        w = graph.tensor(node.inputs[1])
        y = graph.tensor(node.outputs[0])
        require_int8(node, graph, [node.inputs[0]], "input")
        require_int8(node, graph, [node.outputs[0]], "output")
        if len(x.shape) != 4 or len(y.shape) != 4 or len(w.shape) != 4:
            raise unsupported(node, "input, weights and output must be 4-D (NHWC)")
        if w.dtype != "int8" or not w.is_const or w.quant is None:
            raise unsupported(node, "weights must be constant int8 with quantization "
                                    f"(got {w.dtype}{'' if w.is_const else ', not constant'})")
        if np.any(w.quant.zero_point != 0):
            raise unsupported(node, "weights must be symmetric (zero point 0), as TFLite Micro "
                                    "requires for int8")
        if w.quant.per_channel:
            if w.quant.scale.size != out_c:
                raise unsupported(node, f"{w.quant.scale.size} weight scales for {out_c} "
                                        "output channels")
            if w.quant.axis is not None and w.quant.axis != self.weight_qdim:
                raise unsupported(node, f"per-channel weights quantized along axis "
                                        f"{w.quant.axis}; TFLite uses {self.weight_qdim}")
        b = node.inputs[2] if len(node.inputs) > 2 else None
        if b is not None:
            bt = graph.tensor(b)
            if bt.dtype != "int32" or not bt.is_const or bt.size != out_c:
                raise unsupported(node, f"bias must be a constant int32 vector of {out_c} "
                                        f"values (got {bt.dtype} {bt.shape})")
        padding, stride, dil = self._attrs(node)
        if not is_padding(padding):
            raise unsupported(node, f"padding {padding!r} (SAME or VALID)")
        if min(stride) < 1 or min(dil) < 1:
            raise unsupported(node, f"stride {stride} / dilation {dil} must be >= 1")
        g = self._geometry(node, graph)
        want = (x.shape[0], g["out_h"], g["out_w"], out_c)
        if tuple(y.shape) != want:
            raise unsupported(node, f"output shape {y.shape}, the attributes give {want}")
        act_bounds(node, y)

    def _quant(self, node, graph, out_c: int) -> dict:
        x = graph.tensor(node.inputs[0])
        w = graph.tensor(node.inputs[1])
        y = graph.tensor(node.outputs[0])
        mult, shift = per_channel_multipliers(x.quant.scale[0], w.quant.scale,
                                              y.quant.scale[0], out_c)
        act_min, act_max = act_bounds(node, y)
        return dict(input_offset=-int(x.quant.zero_point[0]),
                    output_offset=int(y.quant.zero_point[0]),
                    out_mult=mult, out_shift=shift, act_min=int(act_min), act_max=int(act_max),
                    scales=(float(x.quant.scale[0]), float(y.quant.scale[0])))

    def _window_params(self, node, graph, k_hw, g, q, acc_init) -> dict:
        """The parameters conv and depthwise kernels share: geometry, padding, requantization."""
        x = graph.tensor(node.inputs[0])
        y = graph.tensor(node.outputs[0])
        _, stride, dil = self._attrs(node)
        return dict(
            batches=x.shape[0], in_h=x.shape[1], in_w=x.shape[2], in_c=x.shape[3],
            k_h=k_hw[0], k_w=k_hw[1], out_h=y.shape[1], out_w=y.shape[2],
            stride_h=stride[0], stride_w=stride[1], dil_h=dil[0], dil_w=dil[1],
            pad_top=g["pad_top"], pad_left=g["pad_left"],
            pad_value=int(x.quant.zero_point[0]),
            acc_init=c_i32(acc_init), out_mult=c_i32(q["out_mult"]),
            out_shift=c_i32(q["out_shift"]), output_offset=q["output_offset"],
            act_min=q["act_min"], act_max=q["act_max"],
        )

    @staticmethod
    def _bias(node, graph):
        b = node.inputs[2] if len(node.inputs) > 2 else None
        return None if b is None else np.asarray(graph.tensor(b).data, dtype=np.int64)


@register
class Conv2D(ConvBase):
    """CONV_2D, weights OHWI.

    Kernels: te_conv_2d_s8 (portable, firmware/kernels/te_conv_2d_s8.h); on a target with
    the DSP extension te_conv_2d_1x1_s8_dsp (1x1 filter, no padding) or te_conv_2d_s8_dsp
    (any other), both on the te_conv_2d_mat_mult_s8_dsp stage.  prepare() records the
    choice in ``params["kernel"]``.
    """

    name = "CONV_2D"
    template = "ops/conv_2d.c.j2"
    kernels = ("te_conv_2d_s8.c",)
    weight_qdim = 0
    DSP_TEMPLATES = {"te_conv_2d_1x1_s8_dsp": "ops/conv_2d_1x1_dsp.c.j2",
                     "te_conv_2d_s8_dsp": "ops/conv_2d_dsp.c.j2"}

    def kernel_sources(self, node) -> tuple:
        k = node.params.get("kernel", "te_conv_2d_s8")
        if k in self.DSP_TEMPLATES:
            return (f"{k}.c", "te_conv_2d_mat_mult_s8_dsp.c") + CALL_SOURCES
        return self.kernels

    def template_for(self, node) -> str:
        return self.DSP_TEMPLATES.get(node.params.get("kernel"), self.template)

    def scratch_bytes(self, node, graph) -> int:
        """TE_CONV_2D_1X1_S8_DSP_SCRATCH / TE_CONV_2D_S8_DSP_SCRATCH of the kernel headers."""
        p = node.params
        k = p.get("kernel")
        if k == "te_conv_2d_1x1_s8_dsp":
            return 16 * dsp_k4(p["in_c"])
        if k == "te_conv_2d_s8_dsp":
            return 24 * dsp_k4(p["k_h"] * p["k_w"] * p["in_c"])
        return 0

    def check(self, node, graph) -> None:
        w = graph.tensor(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] else None
        if w is None or len(w.shape) != 4:
            raise unsupported(node, "weights must be a 4-D OHWI tensor")
        self._check_common(node, graph, w.shape[0])
        x = graph.tensor(node.inputs[0])
        if w.shape[3] != x.shape[3]:
            raise unsupported(node, f"grouped convolution (input has {x.shape[3]} channels, "
                                    f"weights {w.shape[3]}) is not supported")

    def prepare(self, node, graph) -> dict:
        w = graph.tensor(node.inputs[1])
        out_c, k_h, k_w, _ = w.shape
        q = self._quant(node, graph, out_c)
        g = self._geometry(node, graph)
        acc_init = fold_input_offset(self._bias(node, graph), q["input_offset"], w.data, 0)
        params = dict(out_c=out_c, **self._window_params(node, graph, (k_h, k_w), g, q, acc_init))
        params.update(self._dsp_params(node, graph, g, acc_init))
        return params

    def _dsp_params(self, node, graph, g, acc_init) -> dict:
        """The kernel choice; with the DSP extension, packed weights and compact requantization."""
        if not target_of(graph).dsp:
            return dict(kernel="te_conv_2d_s8")
        w = graph.tensor(node.inputs[1])
        out_c, k_h, k_w, in_c = w.shape
        q = self._quant(node, graph, out_c)
        no_pad = not any(g[k] for k in ("pad_top", "pad_bottom", "pad_left", "pad_right"))
        kernel = "te_conv_2d_1x1_s8_dsp" if (k_h, k_w) == (1, 1) and no_pad else "te_conv_2d_s8_dsp"
        w2d = np.asarray(w.data).reshape(out_c, -1)
        if node.attrs.get(ACC_INIT_VARIES):
            # acc_init rewritten at run time (a trained bias): no fold that depends on its
            # value; the requantization valid for every |acc| < 2^30 (checked by the caller)
            mult, shift = q["out_mult"], q["out_shift"]
            bound = np.full(out_c, (1 << 30) - 1, np.int64)
        else:
            acc_init, w2d, mult = fold_negative_multipliers(
                acc_init, w2d, q["out_mult"], q["out_shift"], acc_bound(acc_init, w2d))
            acc_init, mult, shift, w2d = fold_constant_channels(
                acc_init, w2d, mult, q["out_shift"],
                clamp=(q["output_offset"], q["act_min"], q["act_max"]))
            bound = acc_bound(acc_init, w2d)
        if srdhm_may_saturate(mult, shift, bound):
            return dict(kernel="te_conv_2d_s8")
        mult, rshift, mode = requant_dsp(mult, shift, bound,
                                         q["output_offset"], q["act_min"], q["act_max"])
        return dict(kernel=kernel, w_packed=pack_weights_dsp(w2d), acc_init=c_i32(acc_init),
                    rq_mult=mult, rq_shift=rshift, rq_mode=mode, rq_scales=q["scales"])

    def reference(self, node, graph, inputs: list) -> list:
        x, w = inputs[0], inputs[1]
        bias = inputs[2] if len(inputs) > 2 else None
        out_c, k_h, k_w, in_c = w.shape
        q = self._quant(node, graph, out_c)
        g = self._geometry(node, graph)
        _, stride, dil = self._attrs(node)
        # (x + input_offset) with padded taps at 0 (TFLM skips them)
        xs = x.astype(np.float64) + q["input_offset"]
        xp = pad_for_windows(xs, g, (k_h, k_w), stride, dil, 0.0)
        cols = np.stack([window_tap(xp, ky, kx, g, stride, dil)
                         for ky in range(k_h) for kx in range(k_w)], axis=3)
        n = x.shape[0]
        cols = cols.reshape(n * g["out_h"] * g["out_w"], k_h * k_w * in_c)
        # products <= 255 * 128 and sums far below 2^53: float64 matmul is exact
        acc = cols @ w.reshape(out_c, -1).astype(np.float64).T
        acc = np.rint(acc).astype(np.int64).reshape(n, g["out_h"], g["out_w"], out_c)
        y = requantize(acc, bias, q["out_mult"], q["out_shift"], q["output_offset"],
                        q["act_min"], q["act_max"])
        return [y]

    def macs(self, node, graph) -> int:
        w = graph.tensor(node.inputs[1])
        y = graph.tensor(node.outputs[0])
        return int(np.prod(y.shape)) * int(np.prod(w.shape[1:]))

    def channel_params(self, node):
        """The DSP kernels' acc_init, rq_mult and rq_shift (planar: group = out_c)."""
        p = node.params
        if p.get("kernel") not in ("te_conv_2d_1x1_s8_dsp", "te_conv_2d_s8_dsp"):
            return None
        return ChannelParams(p["acc_init"], p["rq_mult"],
                             np.asarray(p["rq_shift"], dtype=np.int64) & 0xFF, int(p["out_c"]),
                             scales=p.get("rq_scales"))
