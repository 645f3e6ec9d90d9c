"""Bit-packed per-channel parameters (firmware/kernels/te_unpack_channels.h).

A DSP convolution, depthwise convolution or fully connected kernel reads, per output channel,
an int32 accumulator start, an int32 requantization multiplier and a shift byte: 9 bytes, of
which the model's int32 bias accounts for 4.  On MCUNet-style networks with thousands of
channels that is the largest part of the Flash beyond the weights.  The values span far fewer
bits, so the compiler can store them bit-packed (each field as ``value - base`` in as many
bits as the layer's range needs) and let the layer expand its table into scratch memory
right before it runs (``te_unpack_channels``): about 25 instructions per channel, and the
table's bytes in the arena for the duration of one layer.  The compiler packs a layer only
where that table does not raise the arena (compiler.grant_compact_params).

``table`` is the layout the kernel reads: channels in groups of ``group`` (the last one may be
shorter), each group ``r`` accumulator starts, ``r`` multipliers, then ``r`` bytes padded to a
word.  ``group = n`` gives three planar arrays (conv / fully connected); ``group = 4`` gives
te_depthwise_conv_2d_s8_dsp's ``rq`` layout.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HEADER_WORDS = 3
PAD_WORDS = 2


@dataclass
class ChannelParams:
    """What a kernel reads per output channel, as logical arrays, and its table layout."""
    acc: np.ndarray      # int32 accumulator starts
    mult: np.ndarray     # int32 multipliers
    byte: np.ndarray     # shift bytes (as the kernel reads them, 0..255)
    group: int           # table grouping (see the module docstring)
    names: tuple = ("acc_init", "rq_mult", "rq_shift")   # the kernel's params it replaces:
    #                      three planar arrays, or one grouped table (("rq",))

    @property
    def n(self) -> int:
        return int(self.acc.size)


def table_bytes(n: int, group: int) -> int:
    """TE_UNPACK_CHANNELS_BYTES(n, group)."""
    full, r = divmod(int(n), int(group))
    words = full * (2 * group + (group + 3) // 4) + ((2 * r + (r + 3) // 4) if r else 0)
    return 4 * words


def table(cp: ChannelParams) -> np.ndarray:
    """The int32 table the kernel reads (what te_unpack_channels writes)."""
    out = []
    for c in range(0, cp.n, cp.group):
        r = min(cp.group, cp.n - c)
        out.append(np.asarray(cp.acc[c:c + r], dtype=np.int64).astype(np.int32))
        out.append(np.asarray(cp.mult[c:c + r], dtype=np.int64).astype(np.int32))
        b = np.zeros(4 * ((r + 3) // 4), dtype=np.uint8)
        b[:r] = np.asarray(cp.byte[c:c + r], dtype=np.int64) & 0xFF
        out.append(b.view(np.int32))
    return np.concatenate(out)


def split_table(words: np.ndarray, n: int, group: int, names: tuple = ("rq",)) -> ChannelParams:
    """Inverse of table(): the logical arrays of an existing table (e.g. the depthwise rq)."""
    w = np.asarray(words, dtype=np.int64).astype(np.int32)
    acc, mult, byte = [], [], []
    pos = 0
    for c in range(0, n, group):
        r = min(group, n - c)
        acc.append(w[pos:pos + r])
        mult.append(w[pos + r:pos + 2 * r])
        nb = (r + 3) // 4
        byte.append(w[pos + 2 * r:pos + 2 * r + nb].view(np.uint8)[:r])
        pos += 2 * r + nb
    if pos != w.size:
        raise ValueError(f"table of {w.size} words does not hold {n} channels in groups of {group}")
    return ChannelParams(np.concatenate(acc), np.concatenate(mult),
                         np.concatenate(byte).astype(np.int64), group, names)


def _field(values) -> tuple:
    """(base, width, offsets): values - base as unsigned offsets in `width` bits."""
    v = np.asarray(values, dtype=np.int64)
    base = int(v.min())
    off = v - base
    width = int(off.max()).bit_length()
    return base, width, off.astype(np.uint64)


def widths(cp: ChannelParams) -> tuple:
    return tuple(_field(v)[1] for v in (cp.acc, cp.mult, np.asarray(cp.byte, dtype=np.int64) & 0xFF))


def packable(cp: ChannelParams) -> bool:
    """Whether te_unpack_channels' field limits hold (wm <= 31, wa <= 31, wa + wb <= 32)."""
    wa, wm, wb = widths(cp)
    return wm <= 31 and wa <= 31 and wa + wb <= 32


def _stride(w: int) -> int:
    return w if w <= 57 else 64


def pack(cp: ChannelParams) -> np.ndarray:
    """The uint32 words of te_unpack_channels' packed form (header, stream, zero padding)."""
    if not packable(cp):
        raise ValueError("per-channel values do not fit te_unpack_channels' fields")
    acc_base, wa, fa = _field(np.asarray(cp.acc, dtype=np.int64))
    mult_base, wm, fm = _field(np.asarray(cp.mult, dtype=np.int64))
    byte_base, wb, fb = _field(np.asarray(cp.byte, dtype=np.int64) & 0xFF)
    stride = _stride(wa + wm + wb)
    nwords = -(-(cp.n * stride) // 32) + PAD_WORDS
    bits = np.zeros(nwords * 32, dtype=np.uint8)
    pos = np.arange(cp.n, dtype=np.int64) * stride
    for values, w, at in ((fm, wm, 0), (fa, wa, wm), (fb, wb, wm + wa)):
        for k in range(w):
            bits[pos + at + k] = ((values >> np.uint64(k)) & np.uint64(1)).astype(np.uint8)
    words = np.packbits(bits.reshape(-1, 8), axis=1, bitorder="little").reshape(-1).view("<u4")
    header = np.array([acc_base & 0xFFFFFFFF, mult_base & 0xFFFFFFFF,
                       (byte_base & 0xFF) | (wa << 8) | (wm << 16) | (wb << 24)], dtype=np.uint32)
    return np.concatenate([header, words.astype(np.uint32)])


def unpack(packed: np.ndarray, n: int, group: int) -> np.ndarray:
    """Python twin of te_unpack_channels: the int32 table."""
    p = np.asarray(packed, dtype=np.uint32)
    acc_base, mult_base = int(p[0]), int(p[1])
    byte_base = int(p[2]) & 0xFF
    wa, wm, wb = (int(p[2]) >> 8) & 0xFF, (int(p[2]) >> 16) & 0xFF, int(p[2]) >> 24
    bits = np.unpackbits(p[HEADER_WORDS:].astype("<u4").view(np.uint8), bitorder="little")
    pos = np.arange(n, dtype=np.int64) * _stride(wa + wm + wb)

    def field(at, w):
        v = np.zeros(n, dtype=np.int64)
        for k in range(w):
            v |= bits[pos + at + k].astype(np.int64) << k
        return v

    mult = (field(0, wm) + mult_base) & 0xFFFFFFFF
    acc = (field(wm, wa) + acc_base) & 0xFFFFFFFF
    byte = (field(wm + wa, wb) + byte_base) & 0xFF
    to_i32 = lambda v: np.where(v >= 1 << 31, v - (1 << 32), v)  # noqa: E731
    return table(ChannelParams(to_i32(acc), to_i32(mult), byte, group))


def bind(p: dict, names: tuple, n: int, table_expr: str) -> None:
    """Point a node's template parameters at the expanded table (a C byte-pointer expression):
    three planar arrays (acc_init, multipliers, shift bytes) or one grouped table."""
    words = f"((const int32_t *)(void *){table_expr})"
    if len(names) == 3:
        p[names[0]] = words
        p[names[1]] = f"({words} + {n})"
        p[names[2]] = f"((const int8_t *)(const void *)({words} + {2 * n}))"
    else:
        p[names[0]] = words
