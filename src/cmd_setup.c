/* SPDX-License-Identifier: MIT */
/* cmd_setup.c -- configuration and rule specs for a command, with command-line overrides. */
#include <stdlib.h>
#include <string.h>

#include "trailhook/cmd.h"
#include "trailhook/log.h"
#include "trailhook/mem.h"

extern char **environ;

static bool apply_overrides(const struct th_cmd_overrides *ov, struct th_config *cfg)
{
    char host[256];
    unsigned port;
    if (ov->listen != NULL) {
        if (!th_config_split_addr(ov->listen, host, &port)) {
            fprintf(stderr, "trailhook: --listen: expected HOST:PORT, got '%s'\n", ov->listen);
            return false;
        }
        free(cfg->listen);
        cfg->listen = th_xstrdup(ov->listen);
    }
    if (ov->state_dir != NULL) {
        free(cfg->state_dir);
        cfg->state_dir = th_xstrdup(ov->state_dir);
    }
    if (ov->log_level != NULL && !th_log_parse_level(ov->log_level, &cfg->log_level)) {
        fprintf(stderr, "trailhook: --log-level: expected debug, info, warn or error\n");
        return false;
    }
    return true;
}

bool th_cmd_setup(const struct th_cmd_overrides *ov, struct th_config *cfg,
                  struct th_spec_set *specs)
{
    char err[512] = "";
    const char *path = ov->config_path != NULL ? ov->config_path : getenv("TRAILHOOK_CONFIG");

    if (path != NULL && path[0] == '\0') {
        path = NULL;
    }
    if (th_config_load(path, environ, cfg, err, sizeof(err)) != TH_OK) {
        fprintf(stderr, "trailhook: configuration: %s\n", err);
        return false;
    }
    if (!apply_overrides(ov, cfg)) {
        return false;
    }
    th_log_set_level(cfg->log_level);
    if (specs != NULL && th_spec_set_load(cfg->rules_dir, specs, err, sizeof(err)) != TH_OK) {
        fprintf(stderr, "trailhook: rule specs: %s\n", err);
        return false;
    }
    return true;
}
