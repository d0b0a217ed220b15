/* SPDX-License-Identifier: MIT */
/*
 * alert.h -- what an alert says (DESIGN §5): the rule spec's title, severity, description,
 * runbook and reference, the event's context, summary attributes and indicators, and the AWS CLI
 * commands that show and revoke the exposure; and the dedup key that groups events into alerts.
 * Pure functions; any thread.
 */
#ifndef TRAILHOOK_ALERT_H
#define TRAILHOOK_ALERT_H

#include <jansson.h>

#include "trailhook/config.h"
#include "trailhook/rule.h"
#include "trailhook/spec.h"

/**
 * The alert document for an event that matched @p spec's rule: "title", "severity",
 * "description", "runbook", "reference", "tags", "reports", "context", "summary_attributes",
 * "indicators", "account_id", "region", "image_id", "matched", "event_id", "remediation".
 * @return new reference.
 */
json_t *th_alert_doc(const struct th_spec *spec, const json_t *event,
                     const struct th_rule_result *res);

/**
 * The dedup key: "<RuleID>:<recipientAccountId>:<awsRegion>:<imageId>" (one alert per exposed
 * image) or, with TH_DEDUP_RULE, Panther's "defaultDedupString:<RuleID>".
 * @return new string, free with free().
 */
char *th_alert_dedup_key(const struct th_spec *spec, enum th_dedup_mode mode, const json_t *event);

/**
 * Quotes @p s for a POSIX shell when it holds anything but [A-Za-z0-9._:/=@+-]: event values are
 * attacker-controlled, and operators paste these commands.
 * @return new string, free with free().
 */
char *th_alert_shell_quote(const char *s);

#endif
