/*
 * te_unpack_channels.h - expand the bit-packed per-channel parameters of a convolution,
 * depthwise convolution or fully connected layer (accumulator start, requantization
 * multiplier, shift byte) into the table its DSP kernel reads, in scratch memory.
 *
 * Why: per output channel a kernel reads an int32 accumulator start (bias with the input
 * offset folded in), an int32 multiplier and a shift byte: 9 bytes.  Their values span far
 * fewer bits (e.g. a 20-bit accumulator start, multipliers in [2^30, 2^31), shifts within a
 * range of 16), so the compiler stores them bit-packed in Flash (tinyengine/ops/chanpack.py:
 * about 7 of the 9 bytes on MCUNet) and the layer expands its table right before it runs
 * (on Cortex-M7: about 23 instructions per channel, ~7 per group when group < n, ~130 per
 * call; about 190 bytes of stack).
 *
 * packed (uint32 words, Flash, 4-byte aligned):
 *   [0] acc_base   [1] mult_base
 *   [2] byte_base (bits 0-7) | (wa | X) << 8 | (wm | D) << 16 | wb << 24: the field widths,
 *       with wm <= 31, wa <= 31, wb <= 8, wa + wb <= 32 (chanpack.packable) and
 *       W = wa + wm + wb; D = 0x80 when the mult fields hold multiplier codes (below), else 0;
 *       X = 0x80 when exception lists follow the stream (below), else 0
 *   with D: [3] klo  [4] khi, K = khi 2^32 + klo in [2^63, 2^64)
 *   [3 or 5 ...] a bit stream of ceil(n S / 32) words, bit k = bit (k % 8) of byte k / 8
 *       (little-endian words): record c (channel c = 0 .. n-1) starts at bit c * S, S = W if
 *       W <= 57, else 64, and holds the fields mult - mult_base (wm bits), acc - acc_base
 *       (wa bits), byte - byte_base (wb bits), in that order from its first bit (bits W .. 63
 *       of a 64-bit record do not matter);
 *   without X: then at least 8 bytes of zeros.
 *   with X: then, from the word after the stream, the exception lists: a word na | nb << 16
 *       (na + nb >= 1), na entries of 6 bytes: a uint16 word index into the table and the
 *       int32 acc to write there; nb entries of 3 bytes: a uint16 byte offset into the table
 *       and the shift byte to write there; zeros to a whole word and to at least 8 bytes.  The
 *       offsets are the listed channels' entries in the table of this n and group (so the
 *       table is at most 64 KB; chanpack.table_offsets); the stream fields of a listed channel
 *       may hold anything: the decoder writes the table from the stream, then the listed
 *       values over it (~6 instructions each).  A few outliers (a large bias, a shift apart
 *       from the rest) then no longer widen a field for every channel.
 * table (int32, 4-byte aligned, TE_UNPACK_CHANNELS_BYTES(n, group) bytes): the channels in
 *   groups of `group` (the last group may be shorter, r = its size): r accumulator starts,
 *   r multipliers, then r shift bytes padded with zeros to a whole word.  group = n gives three
 *   planar arrays (conv / fully connected: acc_init = table, mult = table + n, shift bytes at
 *   table + 2n); group = 4 gives te_depthwise_conv_2d_s8_dsp's rq layout.
 * Values: acc = acc_base + field, mult = mult_base + field (uint32 arithmetic, as int32),
 *   byte = (uint8) (byte_base + field), except the listed entries (with X).  With D,
 *   mult_base + field is a code f < 2^24 and
 *   mult = round(hi / 2^(24 + t)) with hi = (f K) >> 32 and t = hi >> 55, 2^31 read as 2^30
 *   (f = 0 gives 0): TFLite's multiplier of s_in w / s_out is that of f with the 24-bit
 *   significand f of the float32 w and K ~ s_in / s_out 2^j, so 23-24 bits replace 30-31
 *   (the compiler keeps the form only where it reproduces every multiplier exactly; ~14
 *   more instructions per channel).
 * Preconditions: n >= 1 (n <= 0 writes nothing), group >= 1, the widths as above, with X
 * the n and group the lists' offsets were made for.  Python twin: chanpack.unpack.
 * Reads the stream with unaligned 32-bit loads (Armv7-M allows them; memcpy elsewhere).
 * Overlap contract (TE_OVERLAP: no-activations): reads only constants and writes only the
 * table in scratch; the kernel that calls it keeps its own contract.
 */
#ifndef TE_UNPACK_CHANNELS_H
#define TE_UNPACK_CHANNELS_H

#include <stdint.h>

#define TE_UNPACK_CHANNELS_BYTES(n, group) \
    (4 * (((n) / (group)) * (2 * (group) + ((group) + 3) / 4) + \
          ((n) % (group) ? 2 * ((n) % (group)) + ((n) % (group) + 3) / 4 : 0)))

void te_unpack_channels(const uint32_t *packed, int32_t n, int32_t group, int32_t *table);

#endif /* TE_UNPACK_CHANNELS_H */
