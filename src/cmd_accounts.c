/* SPDX-License-Identifier: MIT */
/* cmd_accounts.c -- `trailhook accounts`: the operator's view of the new-account set. */
#include <stdlib.h>
#include <string.h>

#include "trailhook/clock.h"
#include "trailhook/cmd.h"
#include "trailhook/store.h"

static const char accounts_usage[] =
    "usage: trailhook accounts add ACCOUNT_ID [--days N] | list | remove ACCOUNT_ID\n";

static bool parse_days(int argc, char *const *argv, long *days)
{
    *days = 3;
    if (argc == 2) {
        return true;
    }
    if (argc != 4 || strcmp(argv[2], "--days") != 0) {
        return false;
    }
    char *end = NULL;
    *days = strtol(argv[3], &end, 10);
    return end != argv[3] && *end == '\0' && *days > 0 && *days <= 3650;
}

static int do_add(struct th_store *st, int argc, char *const *argv, FILE *out)
{
    long days;
    if (argc < 2 || !parse_days(argc, argv, &days)) {
        fputs(accounts_usage, stderr);
        return TH_EXIT_USAGE;
    }
    int64_t now = th_clock_now_ms();
    int64_t expires = now + (int64_t)days * 86400000;
    if (th_store_account_add(st, argv[1], expires, "operator", now) != TH_OK) {
        fprintf(stderr, "trailhook accounts: cannot add: %s\n", th_store_last_error(st));
        return TH_EXIT_FAILED;
    }
    char ts[32];
    th_clock_format_iso8601(expires, ts);
    fprintf(out, "added %s, new until %s\n", argv[1], ts);
    return TH_EXIT_OK;
}

static int do_remove(struct th_store *st, int argc, char *const *argv, FILE *out)
{
    if (argc != 2) {
        fputs(accounts_usage, stderr);
        return TH_EXIT_USAGE;
    }
    enum th_err rc = th_store_account_remove(st, argv[1]);
    if (rc == TH_ENOTFOUND) {
        fprintf(stderr, "trailhook accounts: %s is not in the new-account set\n", argv[1]);
        return TH_EXIT_FAILED;
    }
    if (rc != TH_OK) {
        fprintf(stderr, "trailhook accounts: cannot remove: %s\n", th_store_last_error(st));
        return TH_EXIT_FAILED;
    }
    fprintf(out, "removed %s\n", argv[1]);
    return TH_EXIT_OK;
}

static int do_list(struct th_store *st, FILE *out)
{
    json_t *list = NULL;
    if (th_store_accounts_list(st, &list) != TH_OK) {
        fprintf(stderr, "trailhook accounts: cannot list: %s\n", th_store_last_error(st));
        return TH_EXIT_FAILED;
    }
    size_t i;
    json_t *row;
    json_array_foreach(list, i, row)
    {
        char *line = json_dumps(row, JSON_COMPACT);
        fprintf(out, "%s\n", line);
        free(line);
    }
    json_decref(list);
    return TH_EXIT_OK;
}

int th_cmd_accounts(const struct th_config *cfg, int argc, char *const *argv, FILE *out)
{
    struct th_store *st = NULL;
    char err[512] = "";
    int status;

    if (argc < 1) {
        fputs(accounts_usage, stderr);
        return TH_EXIT_USAGE;
    }
    /* A mistyped state_dir must not look like an empty store (nor create one). */
    if (strcmp(argv[0], "add") != 0 && !th_store_exists_config(cfg)) {
        fprintf(stderr,
                "trailhook accounts: no trailhook store in %s (check --state-dir / state_dir)\n",
                cfg->state_dir);
        return TH_EXIT_USAGE;
    }
    if (th_store_open_config(cfg, TH_STORE_READWRITE, &st, err, sizeof(err)) != TH_OK) {
        fprintf(stderr, "trailhook accounts: %s\n", err);
        return TH_EXIT_USAGE;
    }
    if (strcmp(argv[0], "add") == 0) {
        status = do_add(st, argc, argv, out);
    } else if (strcmp(argv[0], "remove") == 0) {
        status = do_remove(st, argc, argv, out);
    } else if (strcmp(argv[0], "list") == 0 && argc == 1) {
        status = do_list(st, out);
    } else {
        fputs(accounts_usage, stderr);
        status = TH_EXIT_USAGE;
    }
    th_store_free(st);
    return status;
}
