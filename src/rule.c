/* SPDX-License-Identifier: MIT */
/*
 * rule.c -- the compiled rules and their helpers, ported from Panther's Python line by line:
 * where Python would raise, the rule reports TH_RULE_ERROR instead of guessing.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "trailhook/clock.h"
#include "trailhook/event.h"
#include "trailhook/rule.h"

#define AMI_PUBLIC_ID "AWS.CloudTrail.AMIModifiedForPublicAccess"

#define CREATE_ACCOUNT_EVENT "CreateAccountResult"

static const char *const ami_public_events[] = {"ModifyImageAttribute", "ResetImageAttribute",
                                                NULL};

static const struct th_rule_def rules[] = {
    {AMI_PUBLIC_ID, th_rule_ami_public_eval, th_rule_ami_public_resolves, ami_public_events},
};

static bool name_is(const char *name, size_t len, const char *lit)
{
    return strlen(lit) == len && memcmp(name, lit, len) == 0;
}

bool th_rule_wants_event(const struct th_rule_def *rule, const char *name, size_t len)
{
    for (const char *const *n = rule->event_names; *n != NULL; n++) {
        if (name_is(name, len, *n)) {
            return true;
        }
    }
    return false;
}

bool th_rule_learns_from(const char *name, size_t len)
{
    return name_is(name, len, CREATE_ACCOUNT_EVENT);
}

const struct th_rule_def *th_rule_find(const char *id)
{
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        if (id != NULL && strcmp(rules[i].id, id) == 0) {
            return &rules[i];
        }
    }
    return NULL;
}

int64_t th_rule_event_time(const json_t *event, int64_t now_ms)
{
    const char *t = th_event_get_string(event, "eventTime");
    int64_t ms;
    if (t != NULL && th_clock_parse_iso8601(t, strlen(t), &ms)) {
        return ms;
    }
    return now_ms;
}

/* aws_cloudtrail_success: a truthy errorCode or errorMessage means the call failed. */
static bool cloudtrail_success(const json_t *event)
{
    return !th_event_truthy(th_event_get(event, "errorCode")) &&
           !th_event_truthy(th_event_get(event, "errorMessage"));
}

static void set_error(struct th_rule_result *res, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_error(struct th_rule_result *res, const char *fmt, ...)
{
    va_list ap;
    res->verdict = TH_RULE_ERROR;
    va_start(ap, fmt);
    vsnprintf(res->error, sizeof(res->error), fmt, ap);
    va_end(ap);
}

static const char *json_type_name(const json_t *v)
{
    static const char *const names[] = {"an object", "a list", "a string", "an integer",
                                        "a number",  "true",   "false",    "null"};
    return v == NULL ? "null" : names[json_typeof(v)];
}

/*
 * One item of launchPermission.add.items, in Python:
 *   if item.get("group") == "all": return True
 *   if check_account_age(item.get("userId", "") + "-" + ...): return True
 * Returns true when the item decides the rule (a match or an error).
 */
static bool judge_item(const json_t *item, size_t index, int64_t at_ms, th_rule_account_cb accounts,
                       void *ctx, struct th_rule_result *res)
{
    if (!json_is_object(item)) {
        set_error(res, "launchPermission.add.items[%zu] is %s, not an object", index,
                  json_type_name(item));
        return true;
    }
    const char *group = th_event_get_string(item, "group");
    if (group != NULL && strcmp(group, "all") == 0) {
        res->verdict = TH_RULE_MATCH;
        snprintf(res->reason, sizeof(res->reason), "group:all");
        return true;
    }
    const json_t *user = th_event_get(item, "userId");
    if (user == NULL) {
        return false; /* absent (or null): the key is "-", which no account matches */
    }
    if (!json_is_string(user)) {
        set_error(res, "launchPermission.add.items[%zu].userId is %s, not a string", index,
                  json_type_name(user));
        return true;
    }
    const char *id = json_string_value(user);
    /* An id holding U+0000 names no account; its C prefix must not be looked up instead. */
    bool whole = strlen(id) == json_string_length(user);
    if (whole && id[0] != '\0' && accounts != NULL && accounts(ctx, id, at_ms)) {
        res->verdict = TH_RULE_MATCH;
        snprintf(res->reason, sizeof(res->reason), "userId:%.80s", id);
        return true;
    }
    return false;
}

/* Iterating a non-list in Python: a string yields characters, an object its keys (strings). */
static bool judge_non_list(const json_t *items, struct th_rule_result *res)
{
    bool empty = (json_is_string(items) && json_string_length(items) == 0) ||
                 (json_is_object(items) && json_object_size(items) == 0);
    if (empty) {
        return false; /* the loop body never runs: no match, no error */
    }
    set_error(res, "launchPermission.add.items is %s, not a list", json_type_name(items));
    return true;
}

void th_rule_ami_public_eval(const json_t *event, th_rule_account_cb accounts, void *ctx,
                             struct th_rule_result *res)
{
    memset(res, 0, sizeof(*res));
    res->verdict = TH_RULE_NOMATCH;
    if (!cloudtrail_success(event)) {
        return;
    }
    const char *name = th_event_get_string(event, "eventName");
    if (name == NULL || strcmp(name, "ModifyImageAttribute") != 0) {
        return;
    }
    int64_t at_ms = th_rule_event_time(event, th_clock_now_ms());
    const json_t *items = th_event_get_path(event, "requestParameters.launchPermission.add.items");
    if (items == NULL) {
        /* deep_get's default [{}]: one empty item, whose userId "" is never a new account */
        return;
    }
    if (!json_is_array(items)) {
        judge_non_list(items, res);
        return;
    }
    for (size_t i = 0; i < json_array_size(items); i++) {
        if (judge_item(json_array_get(items, i), i, at_ms, accounts, ctx, res)) {
            return;
        }
    }
}

static bool removes_group_all(const json_t *event)
{
    const json_t *items =
        th_event_get_path(event, "requestParameters.launchPermission.remove.items");
    size_t i;
    const json_t *item;
    json_array_foreach(items, i, item)
    {
        const char *group = th_event_get_string(item, "group");
        if (group != NULL && strcmp(group, "all") == 0) {
            return true;
        }
    }
    return false;
}

static bool resets_launch_permission(const json_t *event)
{
    const json_t *params = th_event_get(event, "requestParameters");
    const char *attr = th_event_get_string(params, "attribute");
    if (attr == NULL) {
        attr = th_event_get_string(params, "attributeType");
    }
    return attr != NULL && strcmp(attr, "launchPermission") == 0;
}

bool th_rule_ami_public_resolves(const json_t *event)
{
    const char *name = th_event_get_string(event, "eventName");
    if (name == NULL || !cloudtrail_success(event)) {
        return false;
    }
    if (strcmp(name, "ModifyImageAttribute") == 0) {
        return removes_group_all(event);
    }
    return strcmp(name, "ResetImageAttribute") == 0 && resets_launch_permission(event);
}

json_t *th_rule_context(const json_t *event)
{
    static const char *const keys[][2] = {
        {"eventName", "<MISSING_EVENT_NAME>"},       {"eventSource", "<MISSING_EVENT_SOURCE>"},
        {"awsRegion", "<MISSING_AWS_REGION>"},       {"recipientAccountId", "<MISSING_ACCOUNT_ID>"},
        {"sourceIPAddress", "<MISSING_SOURCE_IP>"},  {"userAgent", "<MISSING_USER_AGENT>"},
        {"userIdentity", "<MISSING_USER_IDENTITY>"},
    };
    json_t *ctx = json_object();
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        /* Python's event.get(key, default): a present null stays null, only absence defaults. */
        const json_t *found = json_object_get(event, keys[i][0]);
        if (found == NULL) {
            found = th_event_get(event, keys[i][0]);
        }
        json_object_set_new(ctx, keys[i][0],
                            found != NULL ? json_deep_copy(found) : json_string(keys[i][1]));
    }
    return ctx;
}

json_t *th_rule_summary(const json_t *event, const json_t *indicators, char *const *attributes,
                        size_t nattributes)
{
    json_t *out = json_object();
    for (size_t i = 0; i < nattributes; i++) {
        const json_t *v = NULL;
        if (strncmp(attributes[i], "p_any_", 6) == 0) {
            v = json_object_get(indicators, attributes[i]);
        }
        if (v == NULL) {
            v = th_event_get_path(event, attributes[i]);
        }
        json_object_set_new(out, attributes[i], v != NULL ? json_deep_copy(v) : json_null());
    }
    return out;
}

/* serviceEventDetails arrives as an object or as a JSON string holding one. */
static json_t *service_event_details(const json_t *event)
{
    const json_t *d = th_event_get(event, "serviceEventDetails");
    if (json_is_string(d)) {
        return json_loadb(json_string_value(d), json_string_length(d), 0, NULL);
    }
    return json_is_object(d) ? json_incref((json_t *)d) : NULL;
}

bool th_rule_created_account(const json_t *event, char account_id[64])
{
    const char *name = th_event_get_string(event, "eventName");
    if (name == NULL || strcmp(name, CREATE_ACCOUNT_EVENT) != 0) {
        return false;
    }
    json_t *details = service_event_details(event);
    const char *state =
        th_event_get_string(th_event_get_path(details, "createAccountStatus"), "state");
    const char *id =
        th_event_get_string(th_event_get_path(details, "createAccountStatus"), "accountId");
    bool ok = state != NULL && strcmp(state, "SUCCEEDED") == 0 && id != NULL && id[0] != '\0' &&
              strlen(id) < 64;
    if (ok) {
        snprintf(account_id, 64, "%s", id);
    }
    json_decref(details);
    return ok;
}
