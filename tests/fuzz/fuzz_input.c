/* SPDX-License-Identifier: MIT */
/* fuzz_input.c -- the request body normaliser: every form, gzip included. */
#include "fuzz.h"
#include "trailhook/input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct th_input_limits lim = {1 << 20, 10000, 64, 4096};
    struct th_input in;
    struct th_input_error err;
    th_input_parse((const char *)data, size, &lim, &in, &err);
    th_input_cleanup(&in);
    return 0;
}
