/* SPDX-License-Identifier: MIT */
/*
 * fuzz_input.c -- the request body normaliser: every form, gzip included; and for plain text,
 * the fast path (jscan) must answer exactly as jansson alone does (input_compare.h).
 */
#include <stdlib.h>

#include "../input_compare.h"
#include "fuzz.h"
#include "trailhook/input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct th_input_limits lim = {1 << 20, 10000, 64, 4096, NULL, NULL};
    struct th_input in;
    struct th_input_error err;
    char why[512];
    th_input_parse((const char *)data, size, &lim, &in, &err);
    th_input_cleanup(&in);
    if (!th_input_is_gzip((const char *)data, size) &&
        input_paths_differ((const char *)data, size, lim, why, sizeof(why)) != NULL) {
        abort();
    }
    return 0;
}
