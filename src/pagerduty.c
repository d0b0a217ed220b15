/* SPDX-License-Identifier: MIT */
/*
 * pagerduty.c -- the PagerDuty Events API v2 body of an alert (trigger), its resolution
 * (resolve, same dedup_key) or a rule error, within PagerDuty's field and 512 KB body limits.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "notify_int.h"
#include "trailhook/log.h"
#include "trailhook/mem.h"
#include "trailhook/pagerduty.h"
#include "trailhook/slack.h"

/* PagerDuty documents no limit for source, component, group and class; bounding them keeps
 * custom_details the only part that can make a body too big, so dropping it always fits. */
#define MAX_SHORT_FIELD 255
#define MAX_TIMESTAMP   40
#define OMITTED_KEY     "omitted_for_size"

const char *th_pagerduty_severity(const char *severity)
{
    static const char *const names[] = {"Info", "Low", "Medium", "High", "Critical"};
    static const char *const mapped[] = {"info", "info", "warning", "error", "critical"};

    for (size_t i = 0; severity != NULL && i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(severity, names[i]) == 0) {
            return mapped[i];
        }
    }
    return NULL;
}

/* ---- reading the document ------------------------------------------------------------------ */

/* ISO 8601 as the store writes it ("2019-01-01T00:00:00Z", fractions or offsets allowed):
 * PagerDuty rejects the whole event over a malformed timestamp, so anything else is left out. */
static bool is_timestamp(const char *s)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    size_t n = s != NULL ? strlen(s) : 0;

    if (n < sizeof(shape) - 1 || n > MAX_TIMESTAMP) {
        return false;
    }
    for (size_t i = 0; i < sizeof(shape) - 1; i++) {
        bool digit = isdigit((unsigned char)s[i]) != 0;
        if (shape[i] == 'd' ? !digit : s[i] != shape[i]) {
            return false;
        }
    }
    return strspn(s + sizeof(shape) - 1, "0123456789.:+-Z") == n - (sizeof(shape) - 1);
}

/* ---- building the event ---------------------------------------------------------------------- */

/* Sets @p key to @p value cut to @p max characters (UTF-8 safe); nothing when @p value is NULL. */
static void set_text(json_t *obj, const char *key, const char *value, size_t max)
{
    if (value != NULL) {
        char *cut = th_slack_truncate(value, max);
        json_object_set_new(obj, key, json_string(cut));
        free(cut);
    }
}

/* Copies @p key of @p from into @p to, when present and not null. */
static void copy_member(json_t *to, const char *to_key, const json_t *from, const char *key)
{
    const json_t *v = json_object_get(from, key);
    if (v != NULL && !json_is_null(v)) {
        json_object_set_new(to, to_key, json_deep_copy(v));
    }
}

static json_t *event_new(const char *action, const char *routing_key, const char *dedup_key)
{
    json_t *ev = json_object();

    json_object_set_new(ev, "routing_key", json_string(th_notify_or(routing_key, "")));
    json_object_set_new(ev, "event_action", json_string(action));
    set_text(ev, "dedup_key", dedup_key, TH_PAGERDUTY_MAX_DEDUP_KEY);
    return ev;
}

/* "[Medium] Title: ami-1111 made public in 123456789012/us-west-2". @return new string. */
static char *alert_summary(const json_t *alert)
{
    const char *severity = th_notify_str(alert, "severity");
    const char *image = th_notify_str(alert, "image_id");
    const char *title = th_notify_or(th_notify_str(alert, "title"),
                                     th_notify_or(th_notify_str(alert, "rule"), "trailhook alert"));
    char *place = th_notify_place(alert);
    char *sev = severity != NULL ? th_xasprintf("[%s] ", severity) : th_xstrdup("");
    char *what = image != NULL ? th_xasprintf(": %s made public", image) : th_xstrdup("");
    char *where = place != NULL ? th_xasprintf(" in %s", place) : th_xstrdup("");
    char *full = th_xasprintf("%s%s%s%s", sev, title, what, where);
    char *out = th_slack_truncate(full, TH_PAGERDUTY_MAX_SUMMARY);

    free(place);
    free(sev);
    free(what);
    free(where);
    free(full);
    return out;
}

static json_t *alert_details(const json_t *alert)
{
    json_t *details = json_object();

    copy_member(details, "context", alert, "context");
    copy_member(details, "summary_attributes", alert, "summary_attributes");
    copy_member(details, "event_count", alert, "event_count");
    copy_member(details, "matched", alert, "matched");
    copy_member(details, "remediation", alert, "remediation");
    copy_member(details, "description", alert, "description");
    copy_member(details, "runbook", alert, "runbook");
    copy_member(details, "alert_id", alert, "id");
    return details;
}

/* The runbook reference and the console page; only http(s) URLs, and none that are malformed. */
static json_t *alert_links(const json_t *alert, const char *console)
{
    const char *reference = th_notify_str(alert, "reference");
    json_t *links = json_array();

    if (th_notify_url_ok(reference)) {
        json_array_append_new(
            links, json_pack("{s:s, s:s}", "href", reference, "text", "Runbook reference"));
    }
    if (console != NULL) {
        char *text = th_xasprintf("AWS console: %s", th_notify_str(alert, "image_id"));
        json_array_append_new(links, json_pack("{s:s, s:s}", "href", console, "text", text));
        free(text);
    }
    return links;
}

static json_t *alert_payload(const json_t *alert)
{
    const char *severity = th_pagerduty_severity(th_notify_str(alert, "severity"));
    const char *first_seen = th_notify_str(alert, "first_seen");
    char *summary = alert_summary(alert);
    json_t *payload = json_object();

    json_object_set_new(payload, "summary", json_string(summary));
    set_text(payload, "source", th_notify_or(th_notify_str(alert, "account_id"), "trailhook"),
             MAX_SHORT_FIELD);
    /* A severity the spec loader would not accept still pages: an exposed image is no "info". */
    json_object_set_new(payload, "severity", json_string(th_notify_or(severity, "error")));
    if (is_timestamp(first_seen)) {
        json_object_set_new(payload, "timestamp", json_string(first_seen));
    }
    set_text(payload, "component", th_notify_str(alert, "image_id"), MAX_SHORT_FIELD);
    set_text(payload, "group", th_notify_str(alert, "region"), MAX_SHORT_FIELD);
    set_text(payload, "class", th_notify_str(alert, "rule"), MAX_SHORT_FIELD);
    json_object_set_new(payload, "custom_details", alert_details(alert));
    free(summary);
    return payload;
}

static json_t *trigger_event(const json_t *alert, const char *routing_key)
{
    char id[32];
    char *console = th_notify_console_url(alert);
    json_t *ev = event_new("trigger", routing_key, th_notify_scalar(alert, "id", id, sizeof(id)));
    json_t *links = alert_links(alert, console);

    json_object_set_new(ev, "payload", alert_payload(alert));
    if (json_array_size(links) > 0) {
        json_object_set_new(ev, "links", links);
    } else {
        json_decref(links);
    }
    json_object_set_new(ev, "client", json_string("trailhook"));
    if (console != NULL) {
        json_object_set_new(ev, "client_url", json_string(console));
    }
    free(console);
    return ev;
}

/* A rule error: a trigger of its own, one incident per record. */
static json_t *rule_error_event(const json_t *doc, const char *routing_key)
{
    char id[32];
    char event_id[32];
    const char *ref = th_notify_scalar(doc, "id", id, sizeof(id));
    char *dedup = ref != NULL ? th_xasprintf("rule-error-%s", ref) : NULL;
    char *summary = th_xasprintf(
        "Rule error in %s on event %s: %s", th_notify_or(th_notify_str(doc, "rule"), "?"),
        th_notify_or(th_notify_scalar(doc, "event_id", event_id, sizeof(event_id)), "?"),
        th_notify_or(th_notify_str(doc, "error"), "unknown error"));
    json_t *ev = event_new("trigger", routing_key, dedup);
    json_t *payload = json_object();
    json_t *details = json_object();

    set_text(payload, "summary", summary, TH_PAGERDUTY_MAX_SUMMARY);
    json_object_set_new(payload, "source", json_string("trailhook"));
    json_object_set_new(payload, "severity", json_string("error"));
    if (is_timestamp(th_notify_str(doc, "created_at"))) {
        json_object_set_new(payload, "timestamp", json_string(th_notify_str(doc, "created_at")));
    }
    set_text(payload, "class", th_notify_str(doc, "rule"), MAX_SHORT_FIELD);
    copy_member(details, "rule", doc, "rule");
    copy_member(details, "event_id", doc, "event_id");
    copy_member(details, "error", doc, "error");
    copy_member(details, "event", doc, "event");
    json_object_set_new(payload, "custom_details", details);
    json_object_set_new(ev, "payload", payload);
    json_object_set_new(ev, "client", json_string("trailhook"));
    free(dedup);
    free(summary);
    return ev;
}

/* ---- fitting the body into 512 KB ------------------------------------------------------------ */

static char *dump(const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s == NULL) {
        /* Every string here came from jansson or a UTF-8-safe cut: only allocation fails. */
        th_log(TH_LOG_ERROR, "pagerduty", "out of memory serialising an event");
        abort();
    }
    return s;
}

/* Removes the largest member of @p details, noting its name under OMITTED_KEY. */
static bool drop_largest(json_t *details)
{
    const char *key = NULL;
    json_t *value = NULL;
    char *largest = NULL;
    size_t largest_len = 0;

    json_object_foreach(details, key, value)
    {
        char *text = strcmp(key, OMITTED_KEY) == 0 ? NULL : dump(value);
        size_t n = text != NULL ? strlen(text) : 0;
        if (text != NULL && (largest == NULL || n > largest_len)) {
            free(largest);
            largest = th_xstrdup(key);
            largest_len = n;
        }
        free(text);
    }
    if (largest == NULL) {
        return false;
    }
    json_object_del(details, largest);
    if (!json_is_array(json_object_get(details, OMITTED_KEY))) {
        json_object_set_new(details, OMITTED_KEY, json_array());
    }
    json_array_append_new(json_object_get(details, OMITTED_KEY), json_string(largest));
    free(largest);
    return true;
}

/*
 * Serialises @p ev within TH_PAGERDUTY_MAX_BODY: PagerDuty refuses a bigger event outright, and a
 * page without the 2 MB context beats no page. Details go largest first, then custom_details.
 */
static char *fit(json_t *ev, size_t *len)
{
    json_t *payload = json_object_get(ev, "payload");
    json_t *details = json_object_get(payload, "custom_details");
    char *body = dump(ev);

    while (strlen(body) > TH_PAGERDUTY_MAX_BODY && details != NULL) {
        if (!drop_largest(details)) {
            json_object_del(payload, "custom_details");
            details = NULL;
        }
        free(body);
        body = dump(ev);
    }
    if (strlen(body) > TH_PAGERDUTY_MAX_BODY) {
        /* Only an absurd routing key gets here; PagerDuty's 400 will name it. */
        th_log(TH_LOG_WARN, "pagerduty", "event of %zu bytes exceeds the %zu byte limit",
               strlen(body), TH_PAGERDUTY_MAX_BODY);
    }
    *len = strlen(body);
    return body;
}

char *th_pagerduty_event(enum th_outbox_kind kind, const json_t *alert, const char *routing_key,
                         size_t *len)
{
    char id[32];
    json_t *ev = NULL;
    size_t n = 0;

    if (kind == TH_OUTBOX_RESOLVE) {
        ev = event_new("resolve", routing_key, th_notify_scalar(alert, "id", id, sizeof(id)));
    } else if (kind == TH_OUTBOX_RULE_ERROR) {
        ev = rule_error_event(alert, routing_key);
    } else {
        ev = trigger_event(alert, routing_key);
    }
    char *body = fit(ev, &n);
    json_decref(ev);
    if (len != NULL) {
        *len = n;
    }
    return body;
}
