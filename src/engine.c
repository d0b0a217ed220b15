/* SPDX-License-Identifier: MIT */
/* engine.c -- runs the enabled rules over a record, learning new accounts in input order. */
#include <stdlib.h>
#include <string.h>

#include "trailhook/clock.h"
#include "trailhook/engine.h"
#include "trailhook/event.h"
#include "trailhook/mem.h"

struct th_accounts {
    json_t *map; /* account id -> integer expiry in ms */
};

struct th_accounts *th_accounts_new(void)
{
    struct th_accounts *set = th_xcalloc(1, sizeof(*set));
    set->map = json_object();
    return set;
}

void th_accounts_free(struct th_accounts *set)
{
    if (set != NULL) {
        json_decref(set->map);
        free(set);
    }
}

void th_accounts_add(struct th_accounts *set, const char *account_id, int64_t expires_ms)
{
    json_t *old = json_object_get(set->map, account_id);
    if (old == NULL || json_integer_value(old) < expires_ms) {
        json_object_set_new(set->map, account_id, json_integer(expires_ms));
    }
}

bool th_accounts_check(const struct th_accounts *set, const char *account_id, int64_t at_ms)
{
    json_t *v = json_object_get(set->map, account_id);
    return v != NULL && json_integer_value(v) > at_ms;
}

void th_accounts_load_list(struct th_accounts *set, const json_t *list)
{
    size_t i;
    json_t *row;
    json_array_foreach(list, i, row)
    {
        const char *id = json_string_value(json_object_get(row, "account_id"));
        const char *exp = json_string_value(json_object_get(row, "expires_at"));
        int64_t ms;
        if (id != NULL && exp != NULL && th_clock_parse_iso8601(exp, strlen(exp), &ms)) {
            th_accounts_add(set, id, ms);
        }
    }
}

/* check_account_age as the rules see it: mock, then learned, then the base lookup. */
static bool lookup(void *ctx, const char *account_id, int64_t at_ms)
{
    struct th_engine_run *run = ctx;
    if (run->has_mock) {
        return run->mock_value;
    }
    if (run->learned != NULL && th_accounts_check(run->learned, account_id, at_ms)) {
        return true;
    }
    return run->base != NULL && run->base(run->base_ctx, account_id, at_ms);
}

static void learn(struct th_engine_run *run, const json_t *event, int64_t now_ms,
                  struct th_engine_record *out)
{
    if (!th_rule_created_account(event, out->learned_account)) {
        return;
    }
    out->learned_expires_ms = th_rule_event_time(event, now_ms) + run->new_account_ttl_ms;
    if (run->learned != NULL) {
        th_accounts_add(run->learned, out->learned_account, out->learned_expires_ms);
    }
}

void th_engine_eval(struct th_engine_run *run, const json_t *event, int64_t now_ms,
                    struct th_engine_record *out)
{
    memset(out, 0, sizeof(*out));
    out->verdict = TH_RULE_NOMATCH;
    out->cloudtrail = th_event_is_cloudtrail(event);
    if (!out->cloudtrail) {
        return;
    }
    learn(run, event, now_ms, out);
    for (size_t i = 0; i < run->specs->nspecs; i++) {
        const struct th_spec *spec = run->specs->specs[i];
        struct th_rule_result res;
        if (!spec->enabled) {
            continue;
        }
        spec->rule->eval(event, lookup, run, &res);
        if (res.verdict == TH_RULE_MATCH) {
            out->verdict = TH_RULE_MATCH;
            out->spec = spec;
            out->result = res;
            return;
        }
        if (res.verdict == TH_RULE_ERROR && out->verdict != TH_RULE_ERROR) {
            out->verdict = TH_RULE_ERROR;
            out->spec = spec;
            out->result = res;
        }
        if (res.verdict == TH_RULE_NOMATCH && out->resolves == NULL &&
            spec->rule->resolves != NULL && spec->rule->resolves(event)) {
            out->resolves = spec;
        }
    }
}

bool th_engine_wants_event(const void *specs, const char *name, size_t len)
{
    const struct th_spec_set *set = specs;
    if (th_rule_learns_from(name, len)) {
        return true;
    }
    for (size_t i = 0; i < set->nspecs; i++) {
        if (set->specs[i]->enabled && th_rule_wants_event(set->specs[i]->rule, name, len)) {
            return true;
        }
    }
    return false;
}

void th_engine_skip(struct th_engine_record *out)
{
    memset(out, 0, sizeof(*out));
    out->verdict = TH_RULE_NOMATCH;
    out->cloudtrail = true;
}
