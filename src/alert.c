/* SPDX-License-Identifier: MIT */
/* alert.c -- the alert document and dedup key of a matching event. */
#include <stdlib.h>
#include <string.h>

#include "trailhook/alert.h"
#include "trailhook/event.h"
#include "trailhook/indicators.h"
#include "trailhook/mem.h"

char *th_alert_shell_quote(const char *s)
{
    static const char safe[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "0123456789._:/=@+-";
    size_t n = strlen(s);
    if (n > 0 && strspn(s, safe) == n) {
        return th_xstrdup(s);
    }
    /* 'it'\''s': close the quote, an escaped quote, reopen. */
    char *out = th_xmalloc(n * 4 + 3);
    char *p = out;
    *p++ = '\'';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\'') {
            memcpy(p, "'\\''", 4);
            p += 4;
        } else {
            *p++ = s[i];
        }
    }
    *p++ = '\'';
    *p = '\0';
    return out;
}

static json_t *string_list(char *const *items, size_t n)
{
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(list, json_string(items[i]));
    }
    return list;
}

static const char *or_empty(const char *s)
{
    return s != NULL ? s : "";
}

static void add_command(json_t *list, const char *description, char *command)
{
    json_array_append_new(list,
                          json_pack("{s:s, s:s}", "description", description, "command", command));
    free(command);
}

/* AWS CLI commands that show the image's sharing and take a public or account share back. */
static json_t *remediation(const char *account, const char *region, const char *image,
                           const char *matched)
{
    json_t *list = json_array();
    char *a = th_alert_shell_quote(account);
    char *r = th_alert_shell_quote(region);
    char *i = th_alert_shell_quote(image);
    char *perm = NULL;

    add_command(
        list, "Show the image and its owner",
        th_xasprintf("aws ec2 describe-images --region %s --owners %s --image-ids %s", r, a, i));
    add_command(list, "Show who may launch the image",
                th_xasprintf("aws ec2 describe-image-attribute --region %s --image-id %s "
                             "--attribute launchPermission",
                             r, i));
    if (strncmp(matched, "userId:", 7) == 0) {
        char *arg = th_xasprintf("Remove=[{UserId=%s}]", matched + 7);
        perm = th_alert_shell_quote(arg);
        free(arg);
    } else {
        perm = th_alert_shell_quote("Remove=[{Group=all}]");
    }
    add_command(list, "Revoke the launch permission that was added",
                th_xasprintf("aws ec2 modify-image-attribute --region %s --image-id %s "
                             "--launch-permission %s",
                             r, i, perm));
    add_command(list, "Or reset the image to private (removes every share)",
                th_xasprintf("aws ec2 reset-image-attribute --region %s --image-id %s "
                             "--attribute launchPermission",
                             r, i));
    free(a);
    free(r);
    free(i);
    free(perm);
    return list;
}

json_t *th_alert_doc(const struct th_spec *spec, const json_t *event,
                     const struct th_rule_result *res)
{
    json_t *indicators = th_indicators_extract(event);
    const char *account = or_empty(th_event_get_string(event, "recipientAccountId"));
    const char *region = or_empty(th_event_get_string(event, "awsRegion"));
    const char *image =
        or_empty(th_event_get_string(th_event_get(event, "requestParameters"), "imageId"));
    json_t *doc = json_object();

    json_object_set_new(doc, "title", json_string(spec->display_name));
    json_object_set_new(doc, "severity", json_string(th_severity_name(spec->severity)));
    json_object_set_new(doc, "description", json_string(spec->description));
    json_object_set_new(doc, "runbook", json_string(spec->runbook));
    json_object_set_new(doc, "reference", json_string(spec->reference));
    json_object_set_new(doc, "tags", string_list(spec->tags, spec->ntags));
    json_object_set_new(doc, "reports", json_deep_copy(spec->reports));
    json_object_set_new(doc, "context", th_rule_context(event));
    json_object_set_new(
        doc, "summary_attributes",
        th_rule_summary(event, indicators, spec->summary_attributes, spec->nsummary_attributes));
    json_object_set_new(doc, "account_id", json_string(account));
    json_object_set_new(doc, "region", json_string(region));
    json_object_set_new(doc, "image_id", json_string(image));
    json_object_set_new(doc, "matched", json_string(res->reason));
    const char *id = th_event_id(event);
    json_object_set_new(doc, "event_id", id != NULL ? json_string(id) : json_null());
    json_object_set_new(doc, "remediation", remediation(account, region, image, res->reason));
    json_object_set_new(doc, "indicators", indicators);
    return doc;
}

char *th_alert_dedup_key(const struct th_spec *spec, enum th_dedup_mode mode, const json_t *event)
{
    if (mode == TH_DEDUP_RULE) {
        return th_xasprintf("defaultDedupString:%s", spec->rule_id);
    }
    return th_xasprintf(
        "%s:%s:%s:%s", spec->rule_id, or_empty(th_event_get_string(event, "recipientAccountId")),
        or_empty(th_event_get_string(event, "awsRegion")),
        or_empty(th_event_get_string(th_event_get(event, "requestParameters"), "imageId")));
}
