/* SPDX-License-Identifier: MIT */
/*
 * fuzz_pagerduty.c -- the PagerDuty formatter on arbitrary JSON taken as an alert document: for
 * every kind the body must be valid JSON of at most 512 KB that PagerDuty's required fields and
 * limits (summary 1024, dedup_key 255, a known severity, http(s) links) are met in.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "trailhook/pagerduty.h"

static void require(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_pagerduty: %s\n", what);
        abort();
    }
}

static const char *get(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static void check_trigger(const json_t *ev)
{
    const json_t *payload = json_object_get(ev, "payload");
    const char *summary = get(payload, "summary");
    const char *severity = get(payload, "severity");
    const json_t *links = json_object_get(ev, "links");

    require(summary != NULL && summary[0] != '\0', "no summary");
    require(code_points(summary) <= TH_PAGERDUTY_MAX_SUMMARY, "summary over 1024");
    require(get(payload, "source") != NULL && get(payload, "source")[0] != '\0', "no source");
    require(severity != NULL &&
                (strcmp(severity, "info") == 0 || strcmp(severity, "warning") == 0 ||
                 strcmp(severity, "error") == 0 || strcmp(severity, "critical") == 0),
            "severity PagerDuty refuses");
    for (size_t i = 0; i < json_array_size(links); i++) {
        const char *href = get(json_array_get(links, i), "href");
        require(href != NULL &&
                    (strncmp(href, "https://", 8) == 0 || strncmp(href, "http://", 7) == 0),
                "link that is not http(s)");
    }
}

static void check_event(enum th_outbox_kind kind, const char *body, size_t len)
{
    json_t *ev = json_loadb(body, len, 0, NULL);
    const char *dedup = get(ev, "dedup_key");

    require(len == strlen(body), "length does not match the body");
    require(len <= TH_PAGERDUTY_MAX_BODY, "body over 512 KB");
    require(json_is_object(ev), "body is not a JSON object");
    require(get(ev, "routing_key") != NULL, "no routing_key");
    require(dedup == NULL || code_points(dedup) <= TH_PAGERDUTY_MAX_DEDUP_KEY,
            "dedup_key over 255");
    if (kind == TH_OUTBOX_RESOLVE) {
        require(strcmp(get(ev, "event_action"), "resolve") == 0, "resolve is not a resolve");
    } else {
        require(strcmp(get(ev, "event_action"), "trigger") == 0, "trigger is not a trigger");
        check_trigger(ev);
    }
    json_decref(ev);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const enum th_outbox_kind kinds[] = {TH_OUTBOX_ALERT, TH_OUTBOX_RULE_ERROR,
                                                TH_OUTBOX_RESOLVE};
    json_t *doc = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);

    if (doc == NULL) {
        return 0;
    }
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        size_t len = 0;
        char *body = th_pagerduty_event(kinds[i], doc, "0123456789abcdef0123456789abcdef", &len);
        check_event(kinds[i], body, len);
        free(body);
    }
    json_decref(doc);
    return 0;
}
