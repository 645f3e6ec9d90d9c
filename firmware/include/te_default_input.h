/*
 * te_default_input.h - the input the firmware runner uses when there is no
 * input.bin.  Defined by input_data.c, which every generated project has
 * (TinyEngine writes an empty one unless the compiler provides data).
 */
#ifndef TE_DEFAULT_INPUT_H
#define TE_DEFAULT_INPUT_H

#include <stdint.h>

/* All inputs' bytes concatenated in te_inputs order, te_default_input_bytes
 * of them; 0 bytes means all-zero inputs. */
extern const uint8_t te_default_input[];
extern const uint32_t te_default_input_bytes;

#endif /* TE_DEFAULT_INPUT_H */
