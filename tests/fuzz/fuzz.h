/* SPDX-License-Identifier: MIT */
/* fuzz.h -- the libFuzzer entry point every target defines; replay.c calls it under gcc. */
#ifndef TRAILHOOK_FUZZ_H
#define TRAILHOOK_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
