/* SPDX-License-Identifier: MIT */
/* fuzz.h -- the libFuzzer entry point every target defines; replay.c calls it under gcc. */
#ifndef TRAILHOOK_FUZZ_H
#define TRAILHOOK_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Characters as Slack and PagerDuty count them: UTF-8 code points. */
static inline size_t code_points(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        n += (*p & 0xc0) != 0x80;
    }
    return n;
}

#endif
