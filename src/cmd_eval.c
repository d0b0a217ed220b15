/* SPDX-License-Identifier: MIT */
/*
 * cmd_eval.c -- `trailhook eval`: offline evaluation of CloudTrail files or stdin, one JSON line
 * per record. Never writes state, alerts or deliveries.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "trailhook/alert.h"
#include "trailhook/cmd.h"
#include "trailhook/engine.h"
#include "trailhook/event.h"
#include "trailhook/input.h"
#include "trailhook/clock.h"
#include "trailhook/log.h"
#include "trailhook/mem.h"
#include "trailhook/store.h"

static void print_record(FILE *out, const char *file, size_t index,
                         const struct th_input_record *record, const struct th_engine_record *rec,
                         const struct th_config *cfg)
{
    const json_t *event = record->event;
    const char *id = th_input_record_id(record);
    json_t *line = json_object();
    char *dedup = NULL;

    if (file != NULL) {
        json_object_set_new(line, "file", json_string(file));
    }
    json_object_set_new(line, "index", json_integer((json_int_t)index));
    json_object_set_new(line, "eventID", id != NULL ? json_string(id) : json_null());
    json_object_set_new(line, "match", json_boolean(rec->verdict == TH_RULE_MATCH));
    if (rec->verdict == TH_RULE_MATCH) {
        dedup = th_alert_dedup_key(rec->spec, cfg->dedup, event);
        json_object_set_new(line, "rule", json_string(rec->spec->rule_id));
        json_object_set_new(line, "dedup", json_string(dedup));
        json_object_set_new(line, "severity", json_string(th_severity_name(rec->spec->severity)));
    } else {
        json_object_set_new(line, "rule", json_null());
        json_object_set_new(line, "dedup", json_null());
    }
    if (rec->verdict == TH_RULE_ERROR) {
        json_object_set_new(
            line, "rule_error",
            json_pack("{s:s, s:s}", "rule", rec->spec->rule_id, "error", rec->result.error));
    }
    if (!rec->cloudtrail) {
        json_object_set_new(line, "cloudtrail", json_false());
    }
    char *text = json_dumps(line, JSON_COMPACT);
    fprintf(out, "%s\n", text);
    free(text);
    free(dedup);
    json_decref(line);
}

/*
 * The line of a record without a tree (no rule wanted it): written directly, as jansson would
 * write it -- the eventID of such a record is a string without escapes, so it is copied as is.
 * Most records of a log file take this path.
 */
static void print_skipped(FILE *out, const char *file_json, size_t index, const char *id)
{
    if (file_json != NULL) {
        fprintf(out, "{\"file\":%s,", file_json);
    } else {
        fputc('{', out);
    }
    if (id != NULL) {
        fprintf(out, "\"index\":%zu,\"eventID\":\"%s\",", index, id);
    } else {
        fprintf(out, "\"index\":%zu,\"eventID\":null,", index);
    }
    fputs("\"match\":false,\"rule\":null,\"dedup\":null}\n", out);
}

/* Says why an input could not be read or parsed, where it can. */
static void report(const char *shown, const struct th_input_error *ierr)
{
    if (ierr->line > 0) {
        fprintf(stderr, "trailhook eval: %s:%ld:%ld: %s\n", shown, ierr->line, ierr->column,
                ierr->message);
    } else {
        fprintf(stderr, "trailhook eval: %s: %s\n", shown, ierr->message);
    }
}

/*
 * Evaluates one input a record at a time; returns 2 when it could not be read or parsed (the
 * records before the fault are printed), else 1 on a match.
 */
static int eval_one(const struct th_config *cfg, struct th_engine_run *run, const char *path,
                    bool name_file, FILE *out)
{
    struct th_input_limits lim = {
        0, SIZE_MAX, cfg->max_json_depth, 0, th_engine_wants_event, run->specs};
    struct th_input_stream *in = NULL;
    struct th_input_error ierr;
    const struct th_input_record *record;
    int errnum = 0;
    int status = TH_EXIT_OK;
    const char *shown = strcmp(path, "-") == 0 ? "<stdin>" : path;
    int64_t now = th_clock_now_ms();
    enum th_err rc;

    if (th_input_stream_open(path, &lim, &in, &errnum) != TH_OK) {
        char msg[128] = "";
        strerror_r(errnum, msg, sizeof(msg));
        fprintf(stderr, "trailhook eval: %s: cannot read: %s\n", shown, msg);
        return TH_EXIT_USAGE;
    }
    json_t *file = json_string(shown);
    char *file_json = name_file ? json_dumps(file, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    json_decref(file);
    for (size_t i = 0; (rc = th_input_stream_next(in, &record, &ierr)) == TH_OK; i++) {
        struct th_engine_record rec;
        if (record->event == NULL) {
            print_skipped(out, file_json, i, record->event_id);
            continue;
        }
        th_engine_eval(run, record->event, now, &rec);
        print_record(out, name_file ? shown : NULL, i, record, &rec, cfg);
        if (rec.verdict == TH_RULE_MATCH) {
            status = TH_EXIT_FAILED;
        }
    }
    th_input_stream_close(in);
    free(file_json);
    if (rc != TH_ENOTFOUND) {
        report(shown, &ierr);
        return TH_EXIT_USAGE;
    }
    return status;
}

/* The configured new-account set, when a store exists; eval never creates one. */
static void load_accounts(const struct th_config *cfg, struct th_accounts *set)
{
    struct th_store *st = NULL;
    json_t *list = NULL;
    if (th_store_open_config(cfg, TH_STORE_READONLY, &st, NULL, 0) != TH_OK) {
        return;
    }
    if (th_store_accounts_list(st, &list) == TH_OK) {
        th_accounts_load_list(set, list);
    }
    json_decref(list);
    th_store_free(st);
}

int th_cmd_eval(const struct th_config *cfg, const struct th_spec_set *specs, int nfiles,
                char *const *files, FILE *out)
{
    static char dash[] = "-";
    char *const stdin_only[] = {dash};
    struct th_accounts *learned = th_accounts_new();
    struct th_engine_run run = {
        .specs = specs,
        .learned = learned,
        .new_account_ttl_ms = cfg->new_account_ttl_seconds * 1000,
    };
    bool any_match = false;
    bool any_bad = false;

    load_accounts(cfg, learned);
    if (nfiles == 0) {
        nfiles = 1;
        files = stdin_only;
    }
    for (int i = 0; i < nfiles; i++) {
        int st = eval_one(cfg, &run, files[i], nfiles > 1, out);
        any_match = any_match || st == TH_EXIT_FAILED;
        any_bad = any_bad || st == TH_EXIT_USAGE;
    }
    fflush(out);
    th_accounts_free(learned);
    if (any_bad) {
        return TH_EXIT_USAGE;
    }
    return any_match ? TH_EXIT_FAILED : TH_EXIT_OK;
}
