/* SPDX-License-Identifier: MIT */
/* ingest.c -- one request body from bytes to committed alerts and the JSON answer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "trailhook/alert.h"
#include "trailhook/clock.h"
#include "trailhook/engine.h"
#include "trailhook/event.h"
#include "trailhook/ingest.h"
#include "trailhook/log.h"
#include "trailhook/mem.h"

/* Per-request working set; arrays sized to the number of records. */
struct work {
    const struct th_config *cfg;
    const struct th_spec_set *specs;
    struct th_ingest_rule_counts *counts; /* the result's, one per spec */
    const struct th_spec **match_specs;   /* the spec of each match */
    struct th_store_match *matches;
    struct th_store_rule_error *errors;
    struct th_store_learned_account *accounts;
    struct th_store_resolution *resolutions;
    size_t nmatches, nerrors, naccounts, nresolutions;
    char **resolution_keys;
    char **keys;              /* dedup keys of matches */
    json_t **docs;            /* alert documents of matches */
    const char **alert_dests; /* destination names per severity, flattened */
    const char **error_dests;
    size_t nerror_dests;
    char (*account_ids)[64];
    char (*error_texts)[160]; /* rule-error messages: the engine's record is reused per event */
};

/* One request between its evaluation and its commit (th_ingest_prepare / th_ingest_commit). */
struct th_ingest_job {
    struct th_input in;
    struct work w;
    struct th_accounts *learned; /* accounts this request taught, for its later records */
    struct th_ingest_result *out;
    bool evaluated; /* false: parsing gave the answer (out holds it) */
};

static void answer(struct th_ingest_result *out, unsigned status, json_t *body)
{
    out->status = status;
    out->body = body;
}

static void answer_error(struct th_ingest_result *out, unsigned status, const char *msg, long line,
                         long column, long index)
{
    json_t *body = json_pack("{s:s}", "error", msg);
    if (line > 0) {
        json_object_set_new(body, "line", json_integer(line));
        json_object_set_new(body, "column", json_integer(column));
    }
    if (index >= 0) {
        json_object_set_new(body, "index", json_integer(index));
    }
    answer(out, status, body);
}

static bool store_account_lookup(void *ctx, const char *account_id, int64_t at_ms)
{
    bool is_new = false;
    if (th_store_account_check(ctx, account_id, at_ms, &is_new) != TH_OK) {
        th_log(TH_LOG_WARN, "ingest", "new-account lookup failed: %s", th_store_last_error(ctx));
    }
    return is_new;
}

/* Destinations that want an alert of @p sev (or rule errors), as a borrowed name list. */
static size_t pick_dests(const struct th_config *cfg, int sev, bool rule_errors, const char **names)
{
    size_t n = 0;
    for (size_t i = 0; i < cfg->ndestinations; i++) {
        const struct th_config_dest *d = &cfg->destinations[i];
        if (rule_errors ? d->rule_errors : (int)d->min_severity <= sev) {
            names[n++] = d->name;
        }
    }
    return n;
}

static void work_init(struct work *w, const struct th_config *cfg, size_t nrecords)
{
    memset(w, 0, sizeof(*w));
    w->cfg = cfg;
    w->matches = th_xcalloc(nrecords, sizeof(*w->matches));
    w->match_specs = th_xcalloc(nrecords, sizeof(*w->match_specs));
    w->errors = th_xcalloc(nrecords, sizeof(*w->errors));
    w->accounts = th_xcalloc(nrecords, sizeof(*w->accounts));
    w->resolutions = th_xcalloc(nrecords, sizeof(*w->resolutions));
    w->resolution_keys = th_xcalloc(nrecords, sizeof(*w->resolution_keys));
    w->keys = th_xcalloc(nrecords, sizeof(*w->keys));
    w->docs = th_xcalloc(nrecords, sizeof(*w->docs));
    w->account_ids = th_xcalloc(nrecords, sizeof(*w->account_ids));
    w->error_texts = th_xcalloc(nrecords, sizeof(*w->error_texts));
    w->alert_dests = th_xcalloc((size_t)(TH_SEV_CRITICAL + 1) * (cfg->ndestinations + 1),
                                sizeof(*w->alert_dests));
    w->error_dests = th_xcalloc(cfg->ndestinations + 1, sizeof(*w->error_dests));
    w->nerror_dests = pick_dests(cfg, 0, true, w->error_dests);
}

static void work_cleanup(struct work *w)
{
    for (size_t i = 0; i < w->nmatches; i++) {
        free(w->keys[i]);
        json_decref(w->docs[i]);
    }
    for (size_t i = 0; i < w->nresolutions; i++) {
        free(w->resolution_keys[i]);
    }
    free(w->resolutions);
    free(w->resolution_keys);
    free(w->matches);
    free(w->match_specs);
    free(w->errors);
    free(w->accounts);
    free(w->keys);
    free(w->docs);
    free(w->account_ids);
    free(w->error_texts);
    free(w->alert_dests);
    free(w->error_dests);
}

static void add_match(struct work *w, const json_t *event, const struct th_engine_record *rec,
                      int64_t now)
{
    const struct th_spec *spec = rec->spec;
    size_t i = w->nmatches++;
    const char **dests = w->alert_dests + (size_t)spec->severity * (w->cfg->ndestinations + 1);
    size_t ndests = pick_dests(w->cfg, (int)spec->severity, false, dests);

    w->match_specs[i] = spec;
    w->keys[i] = th_alert_dedup_key(spec, w->cfg->dedup, event);
    w->docs[i] = th_alert_doc(spec, event, &rec->result);
    w->matches[i] = (struct th_store_match){
        .rule_id = spec->rule_id,
        .dedup_key = w->keys[i],
        .event_id = th_event_id(event),
        .event_time_ms = th_rule_event_time(event, now),
        .dedup_period_minutes = spec->dedup_period_minutes,
        .threshold = spec->threshold,
        .title = spec->display_name,
        .severity = th_severity_name(spec->severity),
        .doc = w->docs[i],
        .destinations = dests,
        .ndestinations = ndests,
    };
}

/* Resolution needs the per-image key: with `dedup: rule` one alert stands for every image. */
static void add_resolution(struct work *w, const json_t *event, const struct th_spec *spec,
                           int64_t now)
{
    if (w->cfg->dedup != TH_DEDUP_IMAGE) {
        return;
    }
    size_t i = w->nresolutions++;
    w->resolution_keys[i] = th_alert_dedup_key(spec, w->cfg->dedup, event);
    w->resolutions[i] = (struct th_store_resolution){
        .rule_id = spec->rule_id,
        .dedup_key = w->resolution_keys[i],
        .event_id = th_event_id(event),
        .event_time_ms = th_rule_event_time(event, now),
    };
}

static void add_rule_error(struct work *w, const json_t *event, const struct th_engine_record *rec)
{
    const char *id = th_event_id(event);
    th_log_set_event(id);
    th_log(TH_LOG_WARN, "rule", "%s: rule error on event %s: %s", rec->spec->rule_id,
           id != NULL ? id : "(no eventID)", rec->result.error);
    th_log_set_event(NULL);
    size_t n = w->nerrors++;
    memcpy(w->error_texts[n], rec->result.error, sizeof(w->error_texts[n]));
    w->errors[n] = (struct th_store_rule_error){
        .rule_id = rec->spec->rule_id,
        .event_id = id,
        .error = w->error_texts[n],
        .event = event,
        .destinations = w->error_dests,
        .ndestinations = w->nerror_dests,
    };
}

static void add_account(struct work *w, const struct th_engine_record *rec)
{
    size_t i = w->naccounts++;
    memcpy(w->account_ids[i], rec->learned_account, sizeof(w->account_ids[i]));
    w->accounts[i].account_id = w->account_ids[i];
    w->accounts[i].expires_ms = rec->learned_expires_ms;
    th_log(TH_LOG_INFO, "ingest", "learned new account %s", rec->learned_account);
}

/* The 202 body: counts and the distinct alert ids the request's matches count toward. */
static json_t *accepted_body(const struct th_input *in, const struct work *w,
                             const struct th_store_match_result *res)
{
    json_t *ids = json_array();
    json_t *seen = json_object();
    size_t duplicates = 0;
    for (size_t i = 0; i < w->nmatches; i++) {
        duplicates += res[i].duplicate;
        if (res[i].alert_id[0] != '\0' && json_object_get(seen, res[i].alert_id) == NULL) {
            json_object_set_new(seen, res[i].alert_id, json_true());
            json_array_append_new(ids, json_string(res[i].alert_id));
        }
    }
    json_decref(seen);
    return json_pack("{s:I, s:I, s:o, s:I, s:I, s:I}", "accepted", (json_int_t)in->nrecords,
                     "matched", (json_int_t)w->nmatches, "alerts", ids, "duplicates",
                     (json_int_t)duplicates, "rule_errors", (json_int_t)w->nerrors, "resolving",
                     (json_int_t)w->nresolutions);
}

static size_t spec_index(const struct th_spec_set *specs, const struct th_spec *spec)
{
    size_t i = 0;
    while (i < specs->nspecs && specs->specs[i] != spec) {
        i++;
    }
    return i;
}

static struct th_store_batch batch_of(const struct work *w)
{
    return (struct th_store_batch){w->matches,  w->nmatches,  w->errors,      w->nerrors,
                                   w->accounts, w->naccounts, w->resolutions, w->nresolutions};
}

static bool writes_anything(const struct work *w)
{
    return w->nmatches + w->nerrors + w->naccounts + w->nresolutions > 0;
}

/* The answer once the store has said @p rc to the request's batch (TH_OK when it had none). */
static void finish(struct th_ingest_job *job, enum th_err rc, const char *store_error,
                   const struct th_store_match_result *res)
{
    struct work *w = &job->w;
    struct th_ingest_result *out = job->out;
    if (rc != TH_OK) {
        th_log(TH_LOG_ERROR, "ingest", "cannot commit %zu alerts: %s", w->nmatches, store_error);
        answer_error(out, 503, "the store cannot take writes now; nothing was applied", 0, 0, -1);
        out->retry_after = 5;
        /* Busy (another process holds the lock) passes by itself; anything else is a store
         * that cannot write, which /readyz must say at once. */
        out->store_failed = rc != TH_ETEMP;
        return;
    }
    for (size_t i = 0; i < w->nmatches; i++) {
        size_t k = spec_index(w->specs, w->match_specs[i]);
        out->new_alerts = out->new_alerts || res[i].new_alert;
        w->counts[k].new_alerts += res[i].new_alert;
        w->counts[k].deduplicated += !res[i].new_alert && res[i].alert_id[0] != '\0';
    }
    /* Rule errors and resolutions may have made outbox rows too. */
    out->new_alerts = out->new_alerts || w->nerrors > 0 || w->nresolutions > 0;
    answer(out, 202, accepted_body(&job->in, w, res));
}

/* The rule that matched (or erred) gets the verdict; every other enabled rule said no. */
static void count_verdict(struct work *w, const struct th_engine_record *rec)
{
    size_t hit = rec->spec != NULL ? spec_index(w->specs, rec->spec) : SIZE_MAX;
    for (size_t k = 0; k < w->specs->nspecs; k++) {
        if (k == hit) {
            w->counts[k].match += rec->verdict == TH_RULE_MATCH;
            w->counts[k].error += rec->verdict == TH_RULE_ERROR;
        } else if (w->specs->specs[k]->enabled) {
            w->counts[k].nomatch++;
        }
    }
}

/* Runs the rules over every record; what must be stored waits in job->w for the commit. */
static void evaluate(struct th_ingest_job *job, const struct th_config *cfg,
                     const struct th_spec_set *specs, struct th_store *st)
{
    struct th_input *in = &job->in;
    struct work *w = &job->w;
    struct th_engine_run run = {.specs = specs,
                                .base = store_account_lookup,
                                .base_ctx = st,
                                .learned = job->learned,
                                .new_account_ttl_ms = cfg->new_account_ttl_seconds * 1000};
    int64_t now = th_clock_now_ms();

    work_init(w, cfg, in->nrecords);
    w->specs = specs;
    job->out->rules = th_xcalloc(specs->nspecs + 1, sizeof(*job->out->rules));
    w->counts = job->out->rules;
    for (size_t i = 0; i < in->nrecords; i++) {
        struct th_engine_record rec;
        if (in->records[i].event != NULL) {
            th_engine_eval(&run, in->records[i].event, now, &rec);
        } else {
            th_engine_skip(&rec);
        }
        count_verdict(w, &rec);
        if (rec.learned_account[0] != '\0') {
            add_account(w, &rec);
        }
        if (rec.verdict == TH_RULE_MATCH) {
            add_match(w, in->records[i].event, &rec, now);
        } else if (rec.verdict == TH_RULE_ERROR) {
            add_rule_error(w, in->records[i].event, &rec);
        } else if (rec.resolves != NULL) {
            add_resolution(w, in->records[i].event, rec.resolves, now);
        }
    }
    job->out->accepted = in->nrecords;
    job->out->matched = w->nmatches;
    job->out->rule_errors = w->nerrors;
    job->evaluated = true;
}

/* Parses the body; false when that alone gave the answer (an error). */
static bool parse_body(const struct th_config *cfg, const struct th_spec_set *specs,
                       const char *body, size_t len, struct th_input *in,
                       struct th_ingest_result *out)
{
    struct th_input_limits lim = {cfg->max_inflated_bytes, cfg->max_events,
                                  cfg->max_json_depth,     cfg->max_string_bytes,
                                  th_engine_wants_event,   specs};
    struct th_input_error ierr;

    enum th_err rc = th_input_parse(body, len, &lim, in, &ierr);
    out->form = in->form;
    if (rc != TH_OK) {
        answer_error(out, rc == TH_ETOOBIG ? 413 : 400, ierr.message, ierr.line, ierr.column,
                     ierr.index);
        return false;
    }
    if (in->form == TH_FORM_EMPTY) {
        answer_error(out, 400, "the body holds no JSON document", 0, 0, -1);
        return false;
    }
    for (size_t i = 0; i < in->nrecords; i++) {
        if (!in->records[i].cloudtrail) {
            answer_error(out, 400, "not a CloudTrail record (no eventName): nothing was applied", 0,
                         0, (long)i);
            return false;
        }
    }
    return true;
}

struct th_ingest_job *th_ingest_prepare(const struct th_config *cfg,
                                        const struct th_spec_set *specs, struct th_store *st,
                                        const char *body, size_t len, struct th_ingest_result *out)
{
    struct th_ingest_job *job = th_xcalloc(1, sizeof(*job));
    memset(out, 0, sizeof(*out));
    job->out = out;
    job->learned = th_accounts_new();
    if (parse_body(cfg, specs, body, len, &job->in, out)) {
        evaluate(job, cfg, specs, st);
    }
    return job;
}

void th_ingest_commit(struct th_store *st, struct th_ingest_job *const *jobs, size_t n)
{
    struct th_store_batch *batches = th_xcalloc(n + 1, sizeof(*batches));
    struct th_store_match_result **results = th_xcalloc(n + 1, sizeof(*results));
    enum th_err *rcs = th_xcalloc(n + 1, sizeof(*rcs));
    size_t *slot = th_xcalloc(n + 1, sizeof(*slot));
    size_t m = 0;

    for (size_t i = 0; i < n; i++) {
        const struct work *w = &jobs[i]->w;
        slot[i] = SIZE_MAX;
        if (jobs[i]->evaluated && writes_anything(w)) {
            slot[i] = m;
            batches[m] = batch_of(w);
            results[m++] = th_xcalloc(w->nmatches + 1, sizeof(**results));
        }
    }
    if (m > 0) {
        th_store_apply_group(st, batches, m, th_clock_now_ms(), results, rcs);
    }
    for (size_t i = 0; i < n; i++) {
        static const struct th_store_match_result none;
        if (jobs[i]->evaluated) {
            bool wrote = slot[i] != SIZE_MAX;
            finish(jobs[i], wrote ? rcs[slot[i]] : TH_OK, wrote ? th_store_last_error(st) : "",
                   wrote ? results[slot[i]] : &none);
        }
    }
    for (size_t i = 0; i < m; i++) {
        free(results[i]);
    }
    free(batches);
    free(results);
    free(rcs);
    free(slot);
}

void th_ingest_job_free(struct th_ingest_job *job)
{
    if (job != NULL) {
        if (job->evaluated) {
            work_cleanup(&job->w);
        }
        th_input_cleanup(&job->in);
        th_accounts_free(job->learned);
        free(job);
    }
}

void th_ingest_process(const struct th_config *cfg, const struct th_spec_set *specs,
                       struct th_store *st, const char *body, size_t len,
                       struct th_ingest_result *out)
{
    struct th_ingest_job *job = th_ingest_prepare(cfg, specs, st, body, len, out);
    th_ingest_commit(st, &job, 1);
    th_ingest_job_free(job);
}

static bool every_record_skipped(const struct th_input *in)
{
    for (size_t i = 0; i < in->nrecords; i++) {
        if (in->records[i].event != NULL) {
            return false;
        }
    }
    return true;
}

/* What evaluating records no rule wants gives: a no-match from every enabled rule. */
static void answer_skipped(struct th_ingest_result *out, const struct th_spec_set *specs,
                           size_t nrecords)
{
    out->status = 202;
    out->accepted = nrecords;
    out->rules = th_xcalloc(specs->nspecs + 1, sizeof(*out->rules));
    for (size_t k = 0; k < specs->nspecs; k++) {
        out->rules[k].nomatch = specs->specs[k]->enabled ? nrecords : 0;
    }
}

bool th_ingest_quick(const struct th_config *cfg, const struct th_spec_set *specs, const char *body,
                     size_t len, struct th_ingest_result *out)
{
    struct th_input in;
    bool answered = true;

    memset(out, 0, sizeof(*out));
    if (len > TH_INGEST_QUICK_MAX_BYTES || th_input_is_gzip(body, len)) {
        return false;
    }
    if (parse_body(cfg, specs, body, len, &in, out)) {
        answered = every_record_skipped(&in);
        if (answered) {
            answer_skipped(out, specs, in.nrecords);
        }
    }
    th_input_cleanup(&in);
    return answered;
}

char *th_ingest_skipped_answer(size_t accepted, const char *request_id)
{
    /* accepted_body() with no match, and the request id; written directly, in one pass, as it
     * is the answer to most requests. */
    static const char shape[] = "{\"accepted\":%zu,\"matched\":0,\"alerts\":[],\"duplicates\":0,"
                                "\"rule_errors\":0,\"resolving\":0,\"request_id\":\"%s\"}";
    size_t cap = sizeof(shape) + 20 + strlen(request_id);
    char *text = th_xmalloc(cap);
    snprintf(text, cap, shape, accepted, request_id);
    return text;
}
