/* SPDX-License-Identifier: MIT */
/* fuzz_spec.c -- the rule spec loader (and the YAML reader under it) on arbitrary bytes. */
#include "fuzz.h"
#include "trailhook/spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct th_spec *spec = NULL;
    char err[256];
    if (th_spec_parse("fuzz.yml", (const char *)data, size, &spec, err, sizeof(err)) == TH_OK) {
        th_spec_free(spec);
    }
    return 0;
}
