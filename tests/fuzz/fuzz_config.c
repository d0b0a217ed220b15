/* SPDX-License-Identifier: MIT */
/* fuzz_config.c -- the configuration loader on arbitrary file contents. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fuzz.h"
#include "trailhook/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[] = "/tmp/th-fuzz-config-XXXXXX";
    char *const env[] = {NULL};
    struct th_config cfg;
    char err[256];
    int fd = mkstemp(path);
    if (fd < 0) {
        return 0;
    }
    FILE *f = fdopen(fd, "wb");
    fwrite(data, 1, size, f);
    fclose(f);
    th_config_load(path, env, &cfg, err, sizeof(err));
    th_config_cleanup(&cfg);
    unlink(path);
    return 0;
}
