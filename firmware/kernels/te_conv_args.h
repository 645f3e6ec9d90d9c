/*
 * te_conv_args.h - the constant arguments of one DSP convolution / depthwise convolution call
 * in one struct, so that the generated code passes a pointer to a const struct in Flash (four
 * register arguments, no stack arguments) instead of 20-27 arguments: about half the code and
 * data of a call.  Each kernel X that takes it has an entry point
 *   void X_call(const te_conv_args *a, const int8_t *input, int8_t *output, int8_t *scratch)
 * equal to the plain call of X with the struct's fields (see X's header for their meaning).
 *
 * channels: the per-output-channel table X reads (te_unpack_channels.h "table": planar
 *   acc_init / multipliers / shift bytes for the convolutions, groups of four for depthwise),
 *   or with TE_CONV_ARGS_PACKED in flags its bit-packed form, which X_call first expands at
 *   the start of `scratch` (TE_UNPACK_CHANNELS_BYTES bytes, 4-byte aligned); the kernel's own
 *   scratch follows it.  TE_CONV_ARGS_SCRATCH: the kernel has its (optional) scratch.
 * in_value: CONV_2D's pad_value, DEPTHWISE_CONV_2D's input_offset.
 * tinyengine/codegen/model.py uses it when every value fits its field (int16_t sizes and in_value,
 * int8_t for the rest; otherwise the plain call): 40 bytes.
 * Overlap contract (TE_OVERLAP: no-activations): reads only the struct and constants;
 * the kernel that calls it keeps its own contract.
 */
#ifndef TE_CONV_ARGS_H
#define TE_CONV_ARGS_H

#include <stdint.h>

#define TE_CONV_ARGS_PACKED 1
#define TE_CONV_ARGS_SCRATCH 2

typedef struct {
    const int8_t *weights;
    const void *channels;
    int16_t batches, in_h, in_w, in_c, out_c, out_h, out_w, in_value;
    int8_t flags, k_h, k_w, stride_h, stride_w, dil_h, dil_w, pad_top, pad_left;
    int8_t rq_mode, output_offset, act_min, act_max;
} te_conv_args;

/* The channel table of a call: `channels` itself, or its expansion at *scratch (then *scratch
 * moves past it).  n channels in groups of `group` (te_unpack_channels.h). */
const int32_t *te_conv_args_table(const te_conv_args *a, int32_t n, int32_t group,
                                  int8_t **scratch);

#endif /* TE_CONV_ARGS_H */
