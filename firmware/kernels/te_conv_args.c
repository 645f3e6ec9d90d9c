/* te_conv_args.c - the channel table of a te_conv_args call.  Contract: te_conv_args.h. */
#include "te_conv_args.h"

#include "te_unpack_channels.h"

const int32_t *te_conv_args_table(const te_conv_args *a, int32_t n, int32_t group,
                                  int8_t **scratch)
{
    if (!(a->flags & TE_CONV_ARGS_PACKED)) {
        return (const int32_t *)a->channels;
    }
    int32_t *table = (int32_t *)(void *)*scratch;
    te_unpack_channels((const uint32_t *)a->channels, n, group, table);
    *scratch += TE_UNPACK_CHANNELS_BYTES(n, group);
    return table;
}
