/* SPDX-License-Identifier: MIT */
/* fuzz_retry_after.c -- the Retry-After parser on arbitrary header values. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "trailhook/httpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char value[128];
    int64_t delay = -1;
    size_t n = size < sizeof(value) - 1 ? size : sizeof(value) - 1;
    memcpy(value, data, n);
    value[n] = '\0';
    if (th_httpc_retry_after(value, 1445412480000LL, &delay) &&
        (delay < 0 || delay > 24LL * 3600 * 1000)) {
        abort(); /* the delay is always within [0, one day] */
    }
    return 0;
}
