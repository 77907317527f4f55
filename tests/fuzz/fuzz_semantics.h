/* SPDX-License-Identifier: MIT */
#ifndef FUZZ_SEMANTICS_H
#define FUZZ_SEMANTICS_H

#include <stddef.h>
#include <stdint.h>

/* Run one input through the library and the model; aborts on a difference. */
int fuzz_one(const uint8_t *data, size_t size);

#endif
