"""Bit-packed per-channel parameters (firmware/kernels/te_unpack_channels.h).

A DSP convolution, depthwise convolution or fully connected kernel reads, per output channel,
an int32 accumulator start, an int32 requantization multiplier and a shift byte: 9 bytes, of
which the model's int32 bias accounts for 4.  On MCUNet-style networks with thousands of
channels that is the largest part of the Flash beyond the weights.  The values span far fewer
bits, so the compiler can store them bit-packed (each field as ``value - base`` in as many
bits as the layer's range needs) and let the layer expand its table into scratch memory
right before it runs (``te_unpack_channels``): about 25 instructions per channel, and the
table's bytes in the arena for the duration of one layer.  The compiler packs a layer only
where that table does not raise the arena (memory.grant_compact_params).  Where the
multipliers are TFLite's of float32 weight scales (``ChannelParams.scales``), the layer stores
each one's 23-24-bit code instead of its 30-31 bits (``mult_codes``, checked exactly for every
channel; about 17 more instructions per channel to expand).  A few outlier channels (a large
bias, a different shift) would widen a field for every channel: a layer may instead store the
acc and shift fields in a narrower window and list the channels outside it with their full
values and table offsets (``exception_channels``; 6 bytes an acc, 3 a shift byte), which the
decoder writes over its table after expanding it; chosen per layer and field only where it
saves words.

``table`` is the layout the kernel reads: channels in groups of ``group`` (the last one may be
shorter), each group ``r`` accumulator starts, ``r`` multipliers, then ``r`` bytes padded to a
word.  ``group = n`` gives three planar arrays (conv / fully connected); ``group = 4`` gives
te_depthwise_conv_2d_s8_dsp's ``rq`` layout.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

HEADER_WORDS = 3
PAD_WORDS = 2
DERIVED = 0x80     # flag in the wm byte of header word 2: multiplier codes, K in words 3-4
EXCEPTIONS = 0x80  # flag in the wa byte of header word 2: exception lists after the stream
EXCEPTION_CODE_BYTES = 128   # te_unpack_channels' code that applies them (Cortex-M7: ~120)


@dataclass
class ChannelParams:
    """What a kernel reads per output channel, as logical arrays, and its table layout."""
    acc: np.ndarray      # int32 accumulator starts
    mult: np.ndarray     # int32 multipliers
    byte: np.ndarray     # shift bytes (as the kernel reads them, 0..255)
    group: int           # table grouping (see the module docstring)
    names: tuple = ("acc_init", "rq_mult", "rq_shift")   # the kernel's params it replaces:
    #                      three planar arrays, or one grouped table (("rq",))
    scales: tuple = None  # (input scale, output scale) when every nonzero multiplier is TFLite's
    #                      QuantizeMultiplier(input scale * w / output scale) of a float32 w

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
    if table_bytes(n, group) != 4 * w.size:
        raise ValueError(f"table of {w.size} words does not hold {n} channels in groups of {group}")
    full, r = divmod(int(n), int(group))
    parts = []                 # (acc, mult, shift words) of the full groups, then of the last one
    if full:
        body = w[:full * (2 * group + (group + 3) // 4)].reshape(full, -1)
        parts.append((body[:, :group], body[:, group:2 * group], body[:, 2 * group:], group))
    if r:
        tail = w[w.size - (2 * r + (r + 3) // 4):].reshape(1, -1)
        parts.append((tail[:, :r], tail[:, r:2 * r], tail[:, 2 * r:], r))
    acc = np.concatenate([a.ravel() for a, _, _, _ in parts])
    mult = np.concatenate([m.ravel() for _, m, _, _ in parts])
    byte = np.concatenate([np.ascontiguousarray(b).view(np.uint8)[:, :k].ravel() for _, _, b, k in parts])
    return ChannelParams(acc, mult, byte.astype(np.int64), group, names)


def _field(values) -> tuple:
    """(base, width, offsets): values - base as unsigned offsets in `width` bits."""
    v = np.asarray(values, dtype=np.int64)
    base = int(v.min())
    off = v - base
    width = int(off.max()).bit_length()
    return base, width, off.astype(np.uint64)


# -- derived multipliers --------------------------------------------------------------------
# TFLite's per-channel multiplier is QuantizeMultiplier(s_in * w_c / s_out): the top 31 bits of
# f_c * s_in / s_out, rounded, with f_c the 24-bit significand of the float32 weight scale w_c.
# So a layer may store f_c (23-24 bits) instead of the multiplier (30-31) and one 64-bit
# constant K ~ s_in / s_out * 2^j; te_unpack_channels computes derive_mult(f_c, K) (below) and
# the compiler keeps that form only where it gives every channel's multiplier exactly.
def derive_mult(code: int, k: int) -> int:
    """Python twin of te_unpack_channels' multiplier from (code, K): with hi = (code * K) >> 32
    (< 2^56) and t = hi >> 55, round(hi / 2^(24 + t)), and 2^31 read as 2^30."""
    lo = code * (k & 0xFFFFFFFF)
    hi = code * (k >> 32) + (lo >> 32)
    t = hi >> 55
    m = (hi + (1 << (23 + t))) >> (24 + t)
    return 1 << 30 if m >> 31 else m


def _ratio_constant(scales) -> int:
    """K = s_in / s_out * 2^j rounded, with j such that K is in [2^63, 2^64)."""
    r = Fraction(float(np.float32(scales[0]))) / Fraction(float(np.float32(scales[1])))
    j = 63 - (r.numerator.bit_length() - r.denominator.bit_length())
    while True:
        k = round(r * (Fraction(2) ** j))
        if k >= 1 << 64:
            j -= 1
        elif k < 1 << 63:
            j += 1
        else:
            return k


def mult_codes(cp: ChannelParams):
    """(codes, K) with derive_mult(codes[c], K) == cp.mult[c] for every channel (code 0 for a
    zero multiplier), or None where the layer has no scales or some multiplier has no code."""
    if cp.scales is None or not cp.n:
        return None
    k = _ratio_constant(cp.scales)
    codes = _codes_of(np.asarray(cp.mult, dtype=np.int64).reshape(-1), k)
    if codes is None:
        return None
    return codes, k


def _derive_mults(codes, k: int):
    """derive_mult on an int64 array of codes (0 <= code < 2^24: every product fits)."""
    lo = codes * (k & 0xFFFFFFFF)
    hi = codes * (k >> 32) + (lo >> 32)
    t = hi >> 55
    m = (hi + np.left_shift(1, 23 + t)) >> (24 + t)
    return np.where(m >> 31 != 0, 1 << 30, m)


def _codes_of(mults, k: int):
    """_code_of of every multiplier (int64 array) as an int64 array, or None where one has
    no code: the same candidates in the same order (t, target, f ascending), tried at once."""
    ms = mults.tolist()
    blocks = []       # (f0 per channel, whether the channel tries this block)
    for t in (0, 1):
        blocks.append((np.array([(m << (56 + t)) // k for m in ms], dtype=np.int64),
                       np.ones(len(ms), dtype=bool)))
        blocks.append((np.full(len(ms), ((1 << 31) << (56 + t)) // k, dtype=np.int64),
                       mults == 1 << 30))
    steps = np.arange(-2, 3)
    cand = np.concatenate([f0[:, None] + steps for f0, _ in blocks], axis=1)
    tried = np.repeat(np.stack([on for _, on in blocks], axis=1), steps.size, axis=1)
    tried &= (cand >= 1 << 23) & (cand < 1 << 24)
    hit = tried & (_derive_mults(np.where(tried, cand, 0), k) == mults[:, None])
    zero = mults == 0
    if not np.all(hit.any(axis=1) | zero):
        return None
    return np.where(zero, 0, cand[np.arange(len(ms)), np.argmax(hit, axis=1)])


def _code_of(m: int, k: int):
    """A code f with derive_mult(f, K) == m (0 for m = 0), or None: f is within 2 of
    m 2^(56+t) / K for t = 0 or 1 (or of 2^31's, which reads as 2^30)."""
    if m == 0:
        return 0
    for t in (0, 1):
        for target in ((m, 1 << 31) if m == 1 << 30 else (m,)):
            f0 = (target << (56 + t)) // k
            for f in range(max(f0 - 2, 1 << 23), min(f0 + 3, 1 << 24)):
                if derive_mult(f, k) == m:
                    return f
    return None


def _windows(values) -> list:
    """Entry w, for w = 0 .. the values' full width: (base, inside), the window
    [base, base + 2^w) that holds the most values (the lowest such base) and the mask of the
    values in it.  The last entry holds them all, with base = the minimum (_field's)."""
    v = np.asarray(values, dtype=np.int64)
    s = np.sort(v)
    out = []
    for w in range(int(s[-1] - s[0]).bit_length() + 1):
        span = (1 << w) - 1
        held = np.searchsorted(s, s + span, side="right") - np.arange(s.size)
        base = int(s[int(np.argmax(held))])
        out.append((base, (v >= base) & (v <= base + span)))
    return out


def _exception_words(na: int, nb: int) -> int:
    """The words of the exception lists (te_unpack_channels.h): the counts, then na entries of
    6 bytes (acc) and nb of 3 (shift byte), padded to a word; 0 without exceptions."""
    if not na and not nb:
        return 0
    return 1 + -(-(6 * na + 3 * nb) // 4)


def _lists_allowed(n: int, group: int) -> bool:
    """Exception entries address the table with 16-bit offsets (the acc's word, the shift
    byte's byte): the table must be at most 64 KB."""
    return table_bytes(n, group) <= 0x10000


def table_offsets(c, n: int, group: int) -> tuple:
    """(word index of channel c's acc, byte offset of its shift byte) in table()'s layout."""
    c = np.asarray(c, dtype=np.int64)
    g = c // group
    first = g * group
    r = np.minimum(group, n - first)
    start = g * (2 * group + (group + 3) // 4)
    return start + (c - first), 4 * (start + 2 * r) + (c - first)


@dataclass
class _Layout:
    fields: tuple        # (acc, mult-or-code, byte) as (base, width, offsets)
    k: object           # K of the multiplier codes, or None
    acc_exc: np.ndarray  # channels whose acc is listed (their stream field holds 0)
    byte_exc: np.ndarray  # channels whose shift byte is listed
    fits: bool          # whether te_unpack_channels' field limits hold

    @property
    def widths(self) -> tuple:
        return tuple(f[1] for f in self.fields)


def _layout(cp: ChannelParams, exceptions: bool = True) -> _Layout:
    """The stored form with the fewest words (header, stream, exception lists and padding).
    The choices: multipliers or their codes (K takes two header words), and for the acc and
    the shift byte field a width w narrower than the values' span with the window of
    _windows, the channels outside it listed as exceptions (tables up to 64 KB; none with
    ``exceptions=False``).  Ties go to fewer exceptions, then fewer stream bits; without
    exceptions this is the plain form (codes where their bits + 64 are fewer).  Where no choice
    fits the decoder's limits: the plain form, with ``fits`` False."""
    n = cp.n
    acc = np.asarray(cp.acc, dtype=np.int64)
    byte = np.asarray(cp.byte, dtype=np.int64) & 0xFF
    aw, bw = _windows(acc), _windows(byte)
    mults = [(np.asarray(cp.mult, dtype=np.int64), None)]
    derived = mult_codes(cp)
    if derived is not None:
        mults.append(derived)
    allowed = exceptions and _lists_allowed(n, cp.group)
    a_out = [n - int(inside.sum()) for _, inside in aw]
    b_out = [n - int(inside.sum()) for _, inside in bw]
    best = plain = None
    for m, k in mults:
        wm = _field(m)[1]
        head = HEADER_WORDS + (2 if k is not None else 0)
        for wa in range(len(aw)) if allowed else (len(aw) - 1,):
            for wb in range(len(bw)) if allowed else (len(bw) - 1,):
                bits = n * _stride(wa + wm + wb)
                tail = max(PAD_WORDS, _exception_words(a_out[wa], b_out[wb]))
                key = (head + -(-bits // 32) + tail, a_out[wa] + b_out[wb],
                       bits + 32 * (head - HEADER_WORDS))
                choice = (key, m, k, wa, wb)
                if wa == len(aw) - 1 and wb == len(bw) - 1 and (plain is None or key < plain[0]):
                    plain = choice
                if _fits(wa, wm, wb) and (best is None or key < best[0]):
                    best = choice
    _, m, k, wa, wb = best if best is not None else plain
    (a_base, a_in), (b_base, b_in) = aw[wa], bw[wb]
    return _Layout((_field_in(acc, a_base, wa, a_in), _field(m), _field_in(byte, b_base, wb, b_in)),
                   k, np.flatnonzero(~a_in), np.flatnonzero(~b_in), best is not None)


def _field_in(values, base: int, width: int, inside) -> tuple:
    """(base, width, offsets): values - base where inside, 0 for the exceptions."""
    return base, width, np.where(inside, values - base, 0).astype(np.uint64)


def widths(cp: ChannelParams, exceptions: bool = True) -> tuple:
    """The stored field widths (wa, wm, wb); wm is the multiplier codes' where those are used,
    wa and wb the narrower ones where the layer lists exceptions."""
    return _layout(cp, exceptions).widths


def exception_channels(cp: ChannelParams) -> tuple:
    """The channels pack() lists as exceptions: (acc channels, shift-byte channels), sorted."""
    lay = _layout(cp)
    return lay.acc_exc, lay.byte_exc


def _fits(wa: int, wm: int, wb: int) -> bool:
    return wm <= 31 and wa <= 31 and wa + wb <= 32


def packable(cp: ChannelParams, exceptions: bool = True) -> bool:
    """Whether te_unpack_channels' field limits hold (wm <= 31, wa <= 31, wa + wb <= 32) for
    the stored widths (with exceptions, some narrower width nearly always does)."""
    return _layout(cp, exceptions).fits


def _stride(w: int) -> int:
    return w if w <= 57 else 64


def pack(cp: ChannelParams, exceptions: bool = True) -> np.ndarray:
    """The uint32 words of te_unpack_channels' packed form (header, stream, exception lists
    where the layer has any, zero padding to at least PAD_WORDS words after the stream)."""
    packed = pack_if_packable(cp, exceptions)
    if packed is None:
        raise ValueError("per-channel values do not fit te_unpack_channels' fields")
    return packed


# pack_if_packable's results by content (_content_key), oldest dropped first past MEMO_SIZE: a
# compiler that plans many graphs sharing layers (tinynas' cost model) packs each table once
MEMO_SIZE = 4096
_packed_memo: dict = {}


def _content_key(cp: ChannelParams, exceptions: bool) -> bytes:
    """A digest of everything pack reads: the values, the grouping, the scales, the option."""
    h = hashlib.blake2b(digest_size=20)
    for v in (cp.acc, cp.mult, cp.byte):
        h.update(np.ascontiguousarray(v, dtype=np.int64).tobytes())
        h.update(b"|")
    h.update(repr((cp.n, cp.group, None if cp.scales is None else [float(x) for x in cp.scales],
                   bool(exceptions))).encode())
    return h.digest()


def pack_if_packable(cp: ChannelParams, exceptions: bool = True):
    """pack(cp) where packable(cp), else None (one layout search for both).  The words are
    read-only: the same table gives the same array again (memoized by content)."""
    key = _content_key(cp, exceptions)
    if key in _packed_memo:
        return _packed_memo[key]
    words = _pack_if_packable(cp, exceptions)
    if words is not None:
        words.setflags(write=False)
    if len(_packed_memo) >= MEMO_SIZE:
        del _packed_memo[next(iter(_packed_memo))]
    _packed_memo[key] = words
    return words


def _pack_if_packable(cp: ChannelParams, exceptions: bool):
    lay = _layout(cp, exceptions)
    if not lay.fits:
        return None
    ((acc_base, wa, fa), (mult_base, wm, fm), (byte_base, wb, fb)), k = lay.fields, lay.k
    stride = _stride(wa + wm + wb)
    bits = np.zeros(-(-(cp.n * stride) // 32) * 32, dtype=np.uint8)
    pos = np.arange(cp.n, dtype=np.int64) * stride
    for values, w, at in ((fm, wm, 0), (fa, wa, wm), (fb, wb, wm + wa)):
        for b in range(w):
            bits[pos + at + b] = ((values >> np.uint64(b)) & np.uint64(1)).astype(np.uint8)
    words = np.packbits(bits.reshape(-1, 8), axis=1, bitorder="little").reshape(-1).view("<u4")
    tail = _exception_lists(cp, lay.acc_exc, lay.byte_exc)
    tail = np.concatenate([tail, np.zeros(max(0, PAD_WORDS - tail.size), dtype=np.uint32)])
    flag = DERIVED if k is not None else 0
    listed = EXCEPTIONS if lay.acc_exc.size or lay.byte_exc.size else 0
    header = [acc_base & 0xFFFFFFFF, mult_base & 0xFFFFFFFF,
              (byte_base & 0xFF) | ((wa | listed) << 8) | ((wm | flag) << 16) | (wb << 24)]
    if k is not None:
        header += [k & 0xFFFFFFFF, k >> 32]
    return np.concatenate([np.array(header, dtype=np.uint32), words.astype(np.uint32), tail])


def _exception_lists(cp: ChannelParams, acc_exc, byte_exc) -> np.ndarray:
    """The exception lists' words (te_unpack_channels.h), empty without exceptions: the counts,
    per acc exception its table word index (16 bits) and value (32), per shift-byte exception
    its table byte offset (16 bits) and byte, for cp's n and group."""
    na, nb = int(acc_exc.size), int(byte_exc.size)
    if not na and not nb:
        return np.zeros(0, dtype=np.uint32)
    acc_at, _ = table_offsets(acc_exc, cp.n, cp.group)
    _, byte_at = table_offsets(byte_exc, cp.n, cp.group)
    acc = np.asarray(cp.acc, dtype=np.int64)
    byte = np.asarray(cp.byte, dtype=np.int64) & 0xFF
    raw = int(na | (nb << 16)).to_bytes(4, "little")
    raw += b"".join(int(o).to_bytes(2, "little") + (int(acc[c]) & 0xFFFFFFFF).to_bytes(4, "little")
                    for o, c in zip(acc_at.tolist(), acc_exc.tolist()))
    raw += b"".join(int(o).to_bytes(2, "little") + bytes([int(byte[c])])
                    for o, c in zip(byte_at.tolist(), byte_exc.tolist()))
    raw += bytes(-len(raw) % 4)
    assert len(raw) == 4 * _exception_words(na, nb)
    return np.frombuffer(raw, dtype="<u4").astype(np.uint32)


def has_exceptions(packed: np.ndarray) -> bool:
    """Whether a packed table lists exceptions (te_unpack_channels must apply them)."""
    return bool((int(np.asarray(packed, dtype=np.uint32)[2]) >> 8) & EXCEPTIONS)


def unpack(packed: np.ndarray, n: int, group: int) -> np.ndarray:
    """Python twin of te_unpack_channels: the int32 table."""
    p = np.asarray(packed, dtype=np.uint32)
    acc_base, mult_base = int(p[0]), int(p[1])
    byte_base = int(p[2]) & 0xFF
    wa, wm, wb = (int(p[2]) >> 8) & 0xFF, (int(p[2]) >> 16) & 0xFF, int(p[2]) >> 24
    derived, listed = bool(wm & DERIVED), bool(wa & EXCEPTIONS)
    wm &= ~DERIVED
    wa &= ~EXCEPTIONS
    start = HEADER_WORDS + (2 if derived else 0)
    stride = _stride(wa + wm + wb)
    bits = np.unpackbits(p[start:].astype("<u4").view(np.uint8), bitorder="little")
    pos = np.arange(n, dtype=np.int64) * stride

    def field(at, w):
        v = np.zeros(n, dtype=np.int64)
        for k in range(w):
            v |= bits[pos + at + k].astype(np.int64) << k
        return v

    mult = (field(0, wm) + mult_base) & 0xFFFFFFFF
    if derived:
        k = int(p[3]) | (int(p[4]) << 32)
        mult = np.array([derive_mult(int(f), k) for f in mult.tolist()], dtype=np.int64)
    acc = (field(wm, wa) + acc_base) & 0xFFFFFFFF
    byte = (field(wm + wa, wb) + byte_base) & 0xFF
    to_i32 = lambda v: np.where(v >= 1 << 31, v - (1 << 32), v)
    out = table(ChannelParams(to_i32(acc), to_i32(mult), byte, group))
    if listed:                 # the listed values over the table, at their offsets
        x = p[start + -(-(n * stride) // 32):].astype("<u4").tobytes()
        na, nb = int.from_bytes(x[0:2], "little"), int.from_bytes(x[2:4], "little")
        as_bytes = out.view(np.uint8)
        for i in range(na):
            e = x[4 + 6 * i:10 + 6 * i]
            out[int.from_bytes(e[:2], "little")] = int.from_bytes(e[2:], "little", signed=True)
        for i in range(nb):
            e = x[4 + 6 * na + 3 * i:7 + 6 * na + 3 * i]
            as_bytes[int.from_bytes(e[:2], "little")] = e[2]
    return out


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
