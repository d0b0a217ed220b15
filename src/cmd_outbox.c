/* SPDX-License-Identifier: MIT */
/* cmd_outbox.c -- `trailhook outbox`: list deliveries, send a dead letter again, or drop it. */
#include <stdlib.h>
#include <string.h>

#include "trailhook/clock.h"
#include "trailhook/cmd.h"
#include "trailhook/store.h"

static const char outbox_usage[] =
    "usage: trailhook outbox list [--dead|--pending] [--destination NAME] | retry ID | drop ID\n";

static int do_list(struct th_store *st, int argc, char *const *argv, FILE *out)
{
    const char *state = NULL;
    const char *dest = NULL;
    json_t *rows = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dead") == 0 || strcmp(argv[i], "--pending") == 0) {
            state = argv[i] + 2;
        } else if (strcmp(argv[i], "--destination") == 0 && i + 1 < argc) {
            dest = argv[++i];
        } else {
            fputs(outbox_usage, stderr);
            return TH_EXIT_USAGE;
        }
    }
    if (th_store_outbox_list(st, dest, state, 1000, &rows) != TH_OK) {
        fprintf(stderr, "trailhook outbox: cannot list: %s\n", th_store_last_error(st));
        return TH_EXIT_FAILED;
    }
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        char *line = json_dumps(row, JSON_COMPACT);
        fprintf(out, "%s\n", line);
        free(line);
    }
    json_decref(rows);
    return TH_EXIT_OK;
}

static bool parse_id(const char *s, int64_t *id)
{
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    *id = v;
    return end != s && *end == '\0' && v > 0;
}

static int do_act(struct th_store *st, const char *verb, const char *arg, FILE *out)
{
    int64_t id;
    enum th_err rc;
    if (!parse_id(arg, &id)) {
        fputs(outbox_usage, stderr);
        return TH_EXIT_USAGE;
    }
    bool retry = strcmp(verb, "retry") == 0;
    rc = retry ? th_store_outbox_requeue(st, id, th_clock_now_ms()) : th_store_outbox_drop(st, id);
    if (rc == TH_ENOTFOUND) {
        fprintf(stderr, "trailhook outbox: no outbox row %lld\n", (long long)id);
        return TH_EXIT_FAILED;
    }
    if (rc == TH_EINVAL) {
        fprintf(stderr, "trailhook outbox: row %lld is not a dead letter\n", (long long)id);
        return TH_EXIT_FAILED;
    }
    if (rc != TH_OK) {
        fprintf(stderr, "trailhook outbox: %s\n", th_store_last_error(st));
        return TH_EXIT_FAILED;
    }
    fprintf(out, "%s %lld%s\n", retry ? "requeued" : "dropped", (long long)id,
            retry ? " (a running service sends it within its next poll)" : "");
    return TH_EXIT_OK;
}

int th_cmd_outbox(const struct th_config *cfg, int argc, char *const *argv, FILE *out)
{
    struct th_store *st = NULL;
    char err[512] = "";
    int status;

    if (argc < 1) {
        fputs(outbox_usage, stderr);
        return TH_EXIT_USAGE;
    }
    /* A mistyped state_dir must not look like an empty store (nor create one). */
    if (!th_store_exists_config(cfg)) {
        fprintf(stderr,
                "trailhook outbox: no trailhook store in %s (check --state-dir / state_dir)\n",
                cfg->state_dir);
        return TH_EXIT_USAGE;
    }
    if (th_store_open_config(cfg, TH_STORE_READWRITE, &st, err, sizeof(err)) != TH_OK) {
        fprintf(stderr, "trailhook outbox: %s\n", err);
        return TH_EXIT_USAGE;
    }
    if (strcmp(argv[0], "list") == 0) {
        status = do_list(st, argc, argv, out);
    } else if ((strcmp(argv[0], "retry") == 0 || strcmp(argv[0], "drop") == 0) && argc == 2) {
        status = do_act(st, argv[0], argv[1], out);
    } else {
        fputs(outbox_usage, stderr);
        status = TH_EXIT_USAGE;
    }
    th_store_free(st);
    return status;
}
