/* SPDX-License-Identifier: MIT */
/*
 * slack.h -- the Slack incoming-webhook message of an alert (Block Kit with a plain-text
 * fallback), within Slack's limits: cut with an ellipsis, never refused. Pure; any thread.
 */
#ifndef TRAILHOOK_SLACK_H
#define TRAILHOOK_SLACK_H

#include <stddef.h>
#include <jansson.h>

#include "trailhook/store.h"

/** Slack's documented limits (characters). */
#define TH_SLACK_MAX_HEADER  150
#define TH_SLACK_MAX_SECTION 3000
#define TH_SLACK_MAX_FIELD   2000
#define TH_SLACK_MAX_FIELDS  10
#define TH_SLACK_MAX_BLOCKS  50
#define TH_SLACK_MAX_TEXT    4000

/**
 * Builds the message body for @p alert (a document as th_store_alert_get returns it).
 * TH_OUTBOX_ALERT: header "<severity emoji> [Severity] Title", description, runbook, fields
 * (account, region, image, actor ARN, source IP, user agent, event time, event count), the
 * reference and an AWS console link to the image, and a context block with the rule id and MITRE
 * tags. TH_OUTBOX_RESOLVE: a short "resolved" message naming the alert and image.
 * TH_OUTBOX_RULE_ERROR: a short message with the rule, event id and error.
 * @return new reference: {"text": fallback, "blocks": [...]}.
 */
json_t *th_slack_message(enum th_outbox_kind kind, const json_t *alert);

/**
 * Cuts @p s to at most @p max characters (UTF-8 code points), ending with "…" when cut.
 * @return new string, free with free().
 */
char *th_slack_truncate(const char *s, size_t max);

#endif
