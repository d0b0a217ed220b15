/* SPDX-License-Identifier: MIT */
/*
 * engine.h -- evaluates records against every enabled rule spec, with the new-account set the
 * rules consult: a base lookup (the store) plus what this run has learned from
 * CreateAccountResult events, in input order. Shared by the service, `eval` and `test`.
 * A th_engine_run is used by one thread at a time.
 */
#ifndef TRAILHOOK_ENGINE_H
#define TRAILHOOK_ENGINE_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "trailhook/rule.h"
#include "trailhook/spec.h"

/** An in-memory new-account set: account id -> expiry. */
struct th_accounts;

/** @return new empty set, free with th_accounts_free(). */
struct th_accounts *th_accounts_new(void);
void th_accounts_free(struct th_accounts *set);
/** Adds or extends (the later expiry wins). */
void th_accounts_add(struct th_accounts *set, const char *account_id, int64_t expires_ms);
/** Is @p account_id in the set with an expiry after @p at_ms? */
bool th_accounts_check(const struct th_accounts *set, const char *account_id, int64_t at_ms);
/** Adds every entry of a list as th_store_accounts_list() returns it (expires_at ISO 8601). */
void th_accounts_load_list(struct th_accounts *set, const json_t *list);

/** How long an account learned from CreateAccountResult stays new: 3 days, as Panther. */
#define TH_ENGINE_NEW_ACCOUNT_TTL_MS (3LL * 24 * 3600 * 1000)

/** The state of one evaluation run (a request, an eval invocation, one rule test). */
struct th_engine_run {
    const struct th_spec_set *specs;
    th_rule_account_cb base; /**< consulted after the learned set; may be NULL */
    void *base_ctx;
    struct th_accounts *learned; /**< owned by the caller */
    int64_t new_account_ttl_ms;
    /* Rule-test mocks: when has_mock, check_account_age answers mock_value. */
    bool has_mock;
    bool mock_value;
};

/** What one record gave. */
struct th_engine_record {
    bool cloudtrail;
    enum th_rule_verdict verdict; /**< MATCH if a rule matched, else ERROR if one erred */
    const struct th_spec *spec;   /**< the rule that matched or erred (first in spec order) */
    struct th_rule_result result;
    const struct th_spec *resolves; /**< the rule whose alert this record resolves, or NULL */
    char learned_account[64];       /**< set when the record taught a new account */
    int64_t learned_expires_ms;
};

/**
 * Evaluates @p event. A CreateAccountResult is learned first (so it counts for later records),
 * then each enabled spec's rule runs in spec order until one matches; a record no rule matches
 * may resolve one (the first whose resolves callback says so).
 * @param[in] now_ms the wall clock, used for events without eventTime
 */
void th_engine_eval(struct th_engine_run *run, const json_t *event, int64_t now_ms,
                    struct th_engine_record *out);

/**
 * Could an enabled rule of @p specs (a const struct th_spec_set *), or new-account learning, do
 * anything with a CloudTrail record whose eventName is @p name? When not, th_engine_skip() is
 * the record's whole evaluation, and input.c need not build its tree (th_input_limits).
 */
bool th_engine_wants_event(const void *specs, const char *name, size_t len);

/** The evaluation of a CloudTrail record th_engine_wants_event() said no to: no match. */
void th_engine_skip(struct th_engine_record *out);

#endif
