/* SPDX-License-Identifier: MIT */
/*
 * cmd.h -- the subcommands of the trailhook binary (DESIGN §3). main.c parses the command line
 * and calls one of these; each returns the process exit status.
 */
#ifndef TRAILHOOK_CMD_H
#define TRAILHOOK_CMD_H

#include <stdbool.h>
#include <stdio.h>

#include "trailhook/config.h"
#include "trailhook/spec.h"

/** Exit statuses shared by the commands. */
#define TH_EXIT_OK     0
#define TH_EXIT_FAILED 1 /**< a test failed; eval: at least one match */
#define TH_EXIT_USAGE  2 /**< usage, configuration or unreadable input */

/** Command-line settings that override the file and the environment. */
struct th_cmd_overrides {
    const char *config_path; /**< --config, else $TRAILHOOK_CONFIG, else none */
    const char *listen;      /**< --listen */
    const char *state_dir;   /**< --state-dir */
    const char *log_level;   /**< --log-level */
};

/**
 * Loads the configuration (and, when @p specs is not NULL, the rule specs) for a command,
 * printing one clear sentence to stderr on failure.
 * @return true on success; release with th_config_cleanup() / th_spec_set_cleanup() either way.
 */
bool th_cmd_setup(const struct th_cmd_overrides *ov, struct th_config *cfg,
                  struct th_spec_set *specs);

/**
 * `trailhook eval [FILE...|-]`: one JSON line per record on @p out, errors on stderr.
 * Starts from the configured new-account set (read-only), learns from the input in memory.
 * @return 0 no match, 1 at least one match, 2 an input could not be read or parsed.
 */
int th_cmd_eval(const struct th_config *cfg, const struct th_spec_set *specs, int nfiles,
                char *const *files, FILE *out);

/**
 * `trailhook test FILE.yml...`: runs each spec's Tests; one line per test and a last line
 * "N passed, N failed" on @p out.
 * @return 0 all passed, 1 any failed, 2 a spec could not be loaded.
 */
int th_cmd_test(int nfiles, char *const *files, FILE *out);

/** `trailhook accounts add ID [--days N] | list | remove ID` on the configured store. */
int th_cmd_accounts(const struct th_config *cfg, int argc, char *const *argv, FILE *out);

/**
 * `trailhook outbox list [--dead|--pending] [--destination NAME] | retry ID | drop ID`: the
 * operator's view of deliveries and dead letters.
 */
int th_cmd_outbox(const struct th_config *cfg, int argc, char *const *argv, FILE *out);

/**
 * `trailhook config`: the effective configuration on @p out, one setting a line with its
 * environment variable, then the destinations; secrets redacted, URLs cut to their origin.
 */
int th_cmd_config(const struct th_config *cfg, FILE *out);

/** `trailhook healthcheck [URL]`: 0 when URL (default: the listen address's /healthz) is 200. */
int th_cmd_healthcheck(const struct th_config *cfg, const char *url);

/**
 * `trailhook serve`: runs the service until SIGTERM/SIGINT; SIGHUP reloads the configuration
 * (@p ov, the command line, is applied again then).
 */
int th_cmd_serve(const struct th_config *cfg, const struct th_spec_set *specs,
                 const struct th_cmd_overrides *ov, bool insecure_no_auth);

#endif
