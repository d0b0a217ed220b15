/* SPDX-License-Identifier: MIT */
/*
 * rule.h -- the compiled detection rules, evaluated exactly as Panther evaluates them, and the
 * alert context every match carries. Pure functions of the event and an account lookup.
 */
#ifndef TRAILHOOK_RULE_H
#define TRAILHOOK_RULE_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

enum th_rule_verdict {
    TH_RULE_NOMATCH = 0,
    TH_RULE_MATCH,
    TH_RULE_ERROR, /**< a shape Panther's Python would raise on: not a match, counted and kept */
};

/**
 * Answers Panther's check_account_age: is @p account_id in the new-account set and unexpired at
 * @p at_ms (the evaluated event's eventTime, or the wall clock when it has none)?
 */
typedef bool (*th_rule_account_cb)(void *ctx, const char *account_id, int64_t at_ms);

struct th_rule_result {
    enum th_rule_verdict verdict;
    char
        error[160]; /**< for TH_RULE_ERROR: e.g. "launchPermission.add.items[1] is not an object" */
    char reason[96]; /**< for TH_RULE_MATCH: what matched, e.g. "group:all" or "userId:012345678901"
                      */
};

/** Evaluates one CloudTrail record. Must not keep pointers into the event. */
typedef void (*th_rule_eval_cb)(const json_t *event, th_rule_account_cb accounts, void *ctx,
                                struct th_rule_result *res);

/**
 * Does @p event take back what the rule alerts on (DESIGN §5 resolution)? Such an event resolves
 * the open alert with the same dedup key.
 */
typedef bool (*th_rule_resolves_cb)(const json_t *event);

/** A rule compiled into trailhook; its metadata comes from the rule spec with the same id. */
struct th_rule_def {
    const char *id;
    th_rule_eval_cb eval;
    th_rule_resolves_cb resolves; /**< NULL: the rule's alerts are never resolved by an event */
    /**
     * Every eventName on which eval or resolves can say anything but "no match" (NULL-ended).
     * Records named otherwise are judged without building their tree.
     */
    const char *const *event_names;
};

/** Is @p name (of @p len bytes) one of @p rule's event_names? */
bool th_rule_wants_event(const struct th_rule_def *rule, const char *name, size_t len);

/** Is @p name the event th_rule_created_account() learns new accounts from? */
bool th_rule_learns_from(const char *name, size_t len);

/** @return the compiled rule with this RuleID, or NULL. */
const struct th_rule_def *th_rule_find(const char *id);

/**
 * AWS.CloudTrail.AMIModifiedForPublicAccess (DESIGN §1): a successful ModifyImageAttribute that
 * adds launch permission for group "all" or for a new account.
 */
void th_rule_ami_public_eval(const json_t *event, th_rule_account_cb accounts, void *ctx,
                             struct th_rule_result *res);

/**
 * A successful event that makes the image private again: ModifyImageAttribute whose
 * launchPermission.remove.items holds {"group": "all"}, or ResetImageAttribute of
 * launchPermission.
 */
bool th_rule_ami_public_resolves(const json_t *event);

/**
 * Time at which the rule judges @p event: its eventTime, or @p now_ms when absent or unparsable.
 */
int64_t th_rule_event_time(const json_t *event, int64_t now_ms);

/**
 * Panther's aws_rule_context: eventName, eventSource, awsRegion, recipientAccountId,
 * sourceIPAddress, userAgent, userIdentity copied from the event; absent keys give placeholders
 * ("<MISSING_EVENT_NAME>", ...); a present null stays null.
 * @return new reference.
 */
json_t *th_rule_context(const json_t *event);

/**
 * The values at the spec's SummaryAttributes paths (dot paths, looked up as Panther does;
 * p_any_* names taken from @p indicators), null when absent.
 * @return new reference (an object keyed by attribute).
 */
json_t *th_rule_summary(const json_t *event, const json_t *indicators, char *const *attributes,
                        size_t nattributes);

/**
 * Is @p event a CreateAccountResult that says an AWS account was created? Accepts
 * serviceEventDetails as an object or as a JSON string.
 * @param[out] account_id the 12-digit id (at least 64 bytes)
 * @return true when it is, with the account id filled in.
 */
bool th_rule_created_account(const json_t *event, char account_id[64]);

#endif
