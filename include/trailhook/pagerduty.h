/* SPDX-License-Identifier: MIT */
/*
 * pagerduty.h -- the PagerDuty Events API v2 event of an alert: trigger (or resolve) with
 * dedup_key = the alert id, within PagerDuty's limits. Pure; any thread.
 */
#ifndef TRAILHOOK_PAGERDUTY_H
#define TRAILHOOK_PAGERDUTY_H

#include <stddef.h>
#include <jansson.h>

#include "trailhook/store.h"

#define TH_PAGERDUTY_MAX_SUMMARY   1024
#define TH_PAGERDUTY_MAX_DEDUP_KEY 255
#define TH_PAGERDUTY_MAX_BODY      ((size_t)512 * 1024)

/**
 * "info", "warning", "error" or "critical" for a rule-spec severity name (Info and Low -> info,
 * Medium -> warning, High -> error, Critical -> critical, as Panther maps them); NULL if unknown.
 */
const char *th_pagerduty_severity(const char *severity);

/**
 * Builds the event for @p alert (a document as th_store_alert_get returns it).
 * TH_OUTBOX_ALERT: {"routing_key","event_action":"trigger","dedup_key": alert id,
 * "payload":{"summary" (<= 1024),"source","severity","timestamp","component","group","class",
 * "custom_details": context + summary attributes + ...},"links":[runbook reference, console],
 * "client","client_url"}. TH_OUTBOX_RESOLVE: {"routing_key","event_action":"resolve","dedup_key"}.
 * TH_OUTBOX_RULE_ERROR: a trigger of severity "error" whose dedup_key is "rule-error-<id>".
 * The serialised body stays within 512 KB: custom_details are cut down first.
 * @param[in] routing_key the integration key (a secret: it goes only into the body)
 * @return new string (compact JSON), free with free(); *len set to its length.
 */
char *th_pagerduty_event(enum th_outbox_kind kind, const json_t *alert, const char *routing_key,
                         size_t *len);

#endif
