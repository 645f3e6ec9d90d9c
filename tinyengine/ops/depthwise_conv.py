"""DEPTHWISE_CONV_2D (int8, depth multiplier), TFLite Micro's ``DepthwiseConvPerChannel``.

Same arithmetic as CONV_2D (see conv.py): per output channel ``c*M+m`` the taps of input
channel ``c``; ``acc_init`` folds bias and input offset at compile time.

Kernels (chosen per node in prepare(), stored as ``params["kernel"]``):

* ``te_depthwise_conv_2d_s8``      portable C, any depth multiplier; the host and the reference.
* ``te_depthwise_conv_2d_s8_dsp``  Cortex-M4/M7 with the DSP extension, depth multiplier 1
  and the preconditions of :func:`dsp_preconditions`: four channels per 32-bit load of the
  NHWC input (SXTAB16 adds the input offset while sign-extending, SMLABB/SMLATT), padded taps
  skipped, filter rearranged at compile time (:func:`pack_filter_dsp`, same bytes), per-channel
  bias, multiplier and shift (:func:`requant_dsp_dw`, 5 bytes per channel besides the bias).  Other nodes on a
  DSP target (depth multiplier > 1, a shift >= 0) keep the portable kernel.

Both write output pixels in raster order and read only the current pixel's window, so the
output may overlap the input (header line ``TE_OVERLAP: window group=1``, see
tinyengine/overlap.py): :meth:`DepthwiseConv2D.overlap_bytes`.
"""
from __future__ import annotations

import numpy as np

from tinyengine.ops import register, target_of, unsupported
from tinyengine.ops.common import c_i32, fold_input_offset
from tinyengine.ops.chanpack import split_table
from tinyengine.ops.conv import (ACC_INIT_VARIES, CALL_SOURCES, ConvBase, acc_bound,
                                  fold_constant_channels, fold_negative_multipliers,
                                  pad_for_windows, requantize, window_tap)

PORTABLE = "te_depthwise_conv_2d_s8"
DSP = "te_depthwise_conv_2d_s8_dsp"


def pack_filter_dsp(w) -> np.ndarray:
    """TFLite depthwise weights [1, KH, KW, C] (multiplier 1) -> te_depthwise_conv_2d_s8_dsp's
    layout: per group of 4 channels the KH*KW taps with 4 bytes each, then each of the
    C % 4 remaining channels' KH*KW taps.  Same byte count."""
    w = np.asarray(w, dtype=np.int8)
    _, k_h, k_w, c = w.shape
    taps = w.reshape(k_h * k_w, c)
    g = c // 4
    body = taps[:, :4 * g].reshape(k_h * k_w, g, 4).transpose(1, 0, 2).reshape(-1)
    tail = taps[:, 4 * g:].T.reshape(-1)
    return np.ascontiguousarray(np.concatenate([body, tail]).astype(np.int8))


def requant_dsp_dw(bias, mult, shift) -> np.ndarray:
    """te_depthwise_conv_2d_s8_dsp's per-channel table (its header): per group of 4 channels
    (the last may hold the in_c % 4 remaining ones, n of them) the n biases (the
    accumulator's start), the n multipliers, then one word holding the n bytes k = e - 1
    (e = -shift in [1, 31]) in memory order, zero-padded.  9 bytes per channel in full
    groups, 5 besides the bias."""
    e = -np.asarray(shift, dtype=np.int64)
    assert np.all(e >= 1) and np.all(e <= 31)
    bias = np.broadcast_to(np.asarray(bias, dtype=np.int64), e.shape)
    mult = np.asarray(mult, dtype=np.int64)
    words = []
    for c0 in range(0, e.size, 4):
        k = np.zeros(4, np.uint8)
        k[:min(4, e.size - c0)] = e[c0:c0 + 4] - 1
        words += [bias[c0:c0 + 4], mult[c0:c0 + 4], k.view("<i4").astype(np.int64)]
    return c_i32(np.concatenate(words))


def dsp_scratch_bytes(in_c, k_h, k_w) -> int:
    """Scratch of te_depthwise_conv_2d_s8_dsp for its widened weights (its header): 8 bytes
    per tap per group of 4 channels.  It is optional (``optional_scratch_bytes``): about 8%
    fewer instructions in the pixel loops, granted by the compiler only where it does not
    raise the arena (without it the kernel sign-extends the int8 weights at every pixel)."""
    return 8 * (int(in_c) // 4) * int(k_h) * int(k_w)


# te_depthwise_conv_2d_s8_dsp's optional pixel loops (its .c): a loop left out hands its pixels
# to te_dw_run_wide or to te_dw_run_int8 (always compiled), so it costs instructions, never
# correctness.  A generated project leaves out those no call of its model takes (dsp_paths,
# codegen.KernelSwitches, KERNEL_SWITCHES in the Makefile).
SWITCHES = ("TE_DW_DSP_3X3_WIDE", "TE_DW_DSP_3X3_INT8", "TE_DW_DSP_RUN_WIDE")


def dsp_paths(p) -> dict:
    """For each of :data:`SWITCHES`, whether a call of te_depthwise_conv_2d_s8_dsp with the
    template parameters ``p`` (the scalars of a node's params, as the template renders them)
    can take that loop: the kernel's own dispatch.  The fast requantization (``full``:
    act_min = output_offset = -128, act_max = 127); the widened weights where the call passes
    the optional scratch (``scratch_bytes`` > 0), in_c >= 4 and full; a 3x3 loop for the
    pixels whose 9 taps are inside the image, te_dw_run_wide for the others (with taps inside
    or not: erring towards a loop kept costs only its Flash)."""
    full = (int(p["act_min"]), int(p["act_max"]), int(p["output_offset"])) == (-128, 127, -128)
    in_c = int(p["in_c"])
    wide = full and in_c >= 4 and int(p.get("scratch_bytes", 0) or 0) > 0
    k_h, k_w = int(p["k_h"]), int(p["k_w"])
    in_h, in_w, out_h, out_w = (int(p[k]) for k in ("in_h", "in_w", "out_h", "out_w"))
    s_h, s_w, d_h, d_w = (int(p[k]) for k in ("stride_h", "stride_w", "dil_h", "dil_w"))
    pad_top, pad_left = int(p["pad_top"]), int(p["pad_left"])
    rows = [0 <= oy * s_h - pad_top and oy * s_h - pad_top + (k_h - 1) * d_h < in_h
            for oy in range(out_h)]
    # the kernel's run of interior columns [ox_lo, ox_hi)
    last = in_w - 1 - (k_w - 1) * d_w + pad_left
    ox_hi = min(last // s_w + 1 if last >= 0 else 0, out_w)
    ox_lo = min(-(-pad_left // s_w), ox_hi)
    inside = any(rows) and ox_lo < ox_hi
    border = not all(rows) or ox_lo > 0 or ox_hi < out_w
    k33 = full and (k_h, k_w) == (3, 3)
    return {"TE_DW_DSP_3X3_WIDE": k33 and wide and inside,
            "TE_DW_DSP_3X3_INT8": k33 and not wide and inside,
            "TE_DW_DSP_RUN_WIDE": wide and ((k_h, k_w) != (3, 3) or border)}


def dsp_preconditions(m, w, bias, mult, shift) -> bool:
    """Whether te_depthwise_conv_2d_s8_dsp's preconditions hold (its header)."""
    if m != 1 or np.any(np.asarray(shift) > -1) or np.any(np.asarray(shift) < -31):
        return False
    if np.any(np.asarray(mult, dtype=np.int64) < (1 << 30)):
        return False
    c = w.shape[3]
    wabs = np.abs(np.asarray(w, dtype=np.int64)).reshape(-1, c).sum(axis=0)
    bound = np.abs(np.asarray(bias, dtype=np.int64)) + 255 * wabs
    return bool(np.all(bound < (1 << 30)))


def raster_max_delta(batches, in_h, in_w, in_c, out_h, out_w, out_c, k_h, k_w, stride_h,
                     stride_w, pad_top, pad_left) -> int:
    """Largest D such that a kernel writing output pixels in raster order, each after reading
    its own window (clipped to the image), stays correct with its output starting at
    ``input start + d`` for every ``d <= D`` (bytes; capped at the input size)."""
    b, oy, ox = np.meshgrid(np.arange(batches), np.arange(out_h), np.arange(out_w),
                            indexing="ij")
    ry = np.clip(oy.ravel() * stride_h - pad_top, 0, in_h - 1)
    rx = np.clip(ox.ravel() * stride_w - pad_left, 0, in_w - 1)
    first_read = ((b.ravel() * in_h + ry) * in_w + rx) * in_c      # lowest byte read for pixel q
    later = np.minimum.accumulate(first_read[::-1])[::-1]          # lowest byte read at/after q
    write_end = (np.arange(first_read.size) + 1) * out_c          # end of pixel q's output
    return int(min(int(np.min(later - write_end)), batches * in_h * in_w * in_c))


@register
class DepthwiseConv2D(ConvBase):
    """DEPTHWISE_CONV_2D, weights [1, KH, KW, C*M].  Kernel: te_depthwise_conv_2d_s8."""

    name = "DEPTHWISE_CONV_2D"
    template = "ops/depthwise_conv_2d.c.j2"
    kernels = ("te_depthwise_conv_2d_s8.c",)
    weight_qdim = 3
    _TEMPLATES = {PORTABLE: "ops/depthwise_conv_2d.c.j2", DSP: "ops/depthwise_conv_2d_dsp.c.j2"}

    def kernel_sources(self, node) -> tuple:
        k = node.params.get("kernel", PORTABLE)
        return (k + ".c",) + (CALL_SOURCES if k == DSP else ())

    def template_for(self, node) -> str:
        return self._TEMPLATES[node.params.get("kernel", PORTABLE)]

    def scratch_bytes(self, node, graph) -> int:
        return int(node.params.get("scratch_bytes", 0))

    def overlap_bytes(self, node, graph) -> int:
        """Largest D (bytes) such that the output may start at ``input start + d`` for every
        ``d <= D``: both kernels write output pixels in raster order, each right after
        reading its own window (tests/test_kernels_depthwise.py runs them so overlapped)."""
        p = node.params
        y = graph.tensor(node.outputs[0])
        return raster_max_delta(p["batches"], p["in_h"], p["in_w"], p["in_c"], p["out_h"],
                                p["out_w"], y.shape[3], p["k_h"], p["k_w"], p["stride_h"],
                                p["stride_w"], p["pad_top"], p["pad_left"])

    def _mult(self, node, graph) -> int:
        x = graph.tensor(node.inputs[0])
        w = graph.tensor(node.inputs[1])
        return w.shape[3] // x.shape[3]

    def check(self, node, graph) -> None:
        if len(node.inputs) < 2 or node.inputs[1] is None:
            raise unsupported(node, "needs a weight tensor")
        x = graph.tensor(node.inputs[0])
        w = graph.tensor(node.inputs[1])
        if len(w.shape) != 4 or w.shape[0] != 1 or len(x.shape) != 4:
            raise unsupported(node, f"weights must be [1, KH, KW, C*M] (got {w.shape}) and "
                                    f"the input 4-D (got {x.shape})")
        if w.shape[3] % x.shape[3] != 0:
            raise unsupported(node, f"{w.shape[3]} output channels is not a multiple of "
                                    f"{x.shape[3]} input channels")
        m_attr = node.attrs.get("depth_multiplier")
        m = w.shape[3] // x.shape[3]
        if m_attr not in (None, 0) and int(m_attr) != m:
            raise unsupported(node, f"depth_multiplier {m_attr} disagrees with the shapes "
                                    f"({x.shape[3]} -> {w.shape[3]} channels)")
        self._check_common(node, graph, w.shape[3])

    def prepare(self, node, graph) -> dict:
        x = graph.tensor(node.inputs[0])
        w = graph.tensor(node.inputs[1])
        _, k_h, k_w, out_c = w.shape
        q = self._quant(node, graph, out_c)
        g = self._geometry(node, graph)
        bias = self._bias(node, graph)
        acc_init = fold_input_offset(bias, q["input_offset"], w.data, 3)
        m = self._mult(node, graph)
        b0 = bias if bias is not None else np.zeros(out_c, np.int64)
        # negative multipliers folded into their channels' weights and bias where exact; then
        # constant channels (all-zero weights, or an output the same for every input): zero
        # weights, a small bias and another channel's (m, s) with the same constant output, so
        # that they do not widen the layer's ranges.  The accumulator is bias + sum w (x + off).
        off = int(q["input_offset"])
        wt = np.asarray(w.data).reshape(-1, out_c).T
        if node.attrs.get(ACC_INIT_VARIES):       # a bias trained at run time (conv.py)
            mult, shift = q["out_mult"], q["out_shift"]
        else:
            b0, wt, mult = fold_negative_multipliers(b0, wt, q["out_mult"], q["out_shift"],
                                                     acc_bound(b0, wt, 128 + abs(off)))
            b0, mult, shift, wt = fold_constant_channels(
                b0, wt, mult, q["out_shift"],
                depthwise=True, x_range=(-128 + off, 127 + off),
                clamp=(q["output_offset"], q["act_min"], q["act_max"]))
        wt = np.ascontiguousarray(wt.T).reshape(w.shape).astype(np.int8)
        dsp = target_of(graph).dsp and dsp_preconditions(m, wt, b0, mult, shift)
        extra = {}
        if dsp:
            extra = dict(filter_dsp=pack_filter_dsp(wt), input_offset=q["input_offset"],
                         rq=requant_dsp_dw(b0, mult, shift),
                         rq_scales=q["scales"],
                         scratch_bytes=0,
                         optional_scratch_bytes=dsp_scratch_bytes(x.shape[3], k_h, k_w))
        return dict(kernel=DSP if dsp else PORTABLE, **extra, depth_multiplier=m,
                    **self._window_params(node, graph, (k_h, k_w), g, q, acc_init))

    def reference(self, node, graph, inputs: list) -> list:
        x, w = inputs[0], inputs[1]
        bias = inputs[2] if len(inputs) > 2 else None
        _, k_h, k_w, out_c = w.shape
        m = out_c // x.shape[3]
        q = self._quant(node, graph, out_c)
        g = self._geometry(node, graph)
        _, stride, dil = self._attrs(node)
        xs = x.astype(np.int64) + q["input_offset"]
        xp = pad_for_windows(xs, g, (k_h, k_w), stride, dil, 0)
        xp = xp[..., np.arange(out_c) // m]          # output channel c*M+m reads input c
        wt = w.astype(np.int64)
        acc = np.zeros((x.shape[0], g["out_h"], g["out_w"], out_c), dtype=np.int64)
        for ky in range(k_h):
            for kx in range(k_w):
                acc += window_tap(xp, ky, kx, g, stride, dil) * wt[0, ky, kx, :]
        y = requantize(acc, bias, q["out_mult"], q["out_shift"], q["output_offset"],
                        q["act_min"], q["act_max"])
        return [y]

    def macs(self, node, graph) -> int:
        w = graph.tensor(node.inputs[1])
        y = graph.tensor(node.outputs[0])
        return int(np.prod(y.shape)) * int(w.shape[1] * w.shape[2])

    def channel_params(self, node):
        """te_depthwise_conv_2d_s8_dsp's rq table (groups of four channels)."""
        p = node.params
        if p.get("kernel") != DSP:
            return None
        cp = split_table(p["rq"], int(p["in_c"]) * int(p["depth_multiplier"]), 4)
        cp.scales = p.get("rq_scales")
        return cp
