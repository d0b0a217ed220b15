/* SPDX-License-Identifier: MIT */
/*
 * store.h -- trailhook's durable state (DESIGN §6): alerts and their dedup windows, seen event
 * IDs, the new-account set, rule-error records and the outbox that destinations drain.
 * The embedded backend is one SQLite database in WAL mode under state_dir; a request's effects
 * are applied in one transaction, so a 2xx is only ever sent for committed alerts.
 *
 * Threads: a handle is used by one thread at a time. Open one handle per thread; handles on the
 * same state_dir share the database safely (SQLite locking, busy timeout).
 */
#ifndef TRAILHOOK_STORE_H
#define TRAILHOOK_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "trailhook/err.h"

struct th_config;

struct th_store;

enum th_store_mode {
    TH_STORE_READWRITE = 0, /**< creates state_dir and the database when missing */
    TH_STORE_READONLY,      /**< never creates or writes anything (trailhook eval) */
};

/** The database file inside state_dir. */
#define TH_STORE_DB_NAME "trailhook.db"

/**
 * Opens (and in read-write mode creates or migrates) the store under @p state_dir.
 * @param[out] out new handle, free with th_store_free()
 * @param[out] err one sentence naming the path on failure (may be NULL)
 * @return TH_OK; TH_ENOTFOUND in read-only mode when there is no database; TH_EIO.
 */
enum th_err th_store_open(const char *state_dir, enum th_store_mode mode, struct th_store **out,
                          char *err, size_t errlen);

/** @return true when @p state_dir holds a trailhook database (operators' commands check first). */
bool th_store_exists(const char *state_dir);

/**
 * Opens the configured backend: SQLite under cfg->state_dir, or Redis at cfg->state_redis_url
 * when state.backend is redis (several replicas sharing dedup, alerts and deliveries).
 */
/** Whether the configured store exists: the SQLite file, or always for Redis (shared). */
bool th_store_exists_config(const struct th_config *cfg);

enum th_err th_store_open_config(const struct th_config *cfg, enum th_store_mode mode,
                                 struct th_store **out, char *err, size_t errlen);

/** Closes the handle; NULL is fine. */
void th_store_free(struct th_store *st);

/** @return the last SQLite error message of this handle, for logs (static storage of the handle).
 */
const char *th_store_last_error(const struct th_store *st);

/* ---- the new-account set -------------------------------------------------------------- */

/**
 * Adds an account, or updates its expiry when present (the later expiry wins).
 * @param[in] source "learned" (from CreateAccountResult) or "operator"
 */
enum th_err th_store_account_add(struct th_store *st, const char *account_id, int64_t expires_ms,
                                 const char *source, int64_t now_ms);

/** Removes an account. @return TH_ENOTFOUND when it was not in the set. */
enum th_err th_store_account_remove(struct th_store *st, const char *account_id);

/** Sets *is_new when @p account_id is in the set with expires_ms > @p at_ms. */
enum th_err th_store_account_check(struct th_store *st, const char *account_id, int64_t at_ms,
                                   bool *is_new);

/**
 * Lists the set, ordered by account id.
 * @param[out] out new array of {"account_id","expires_at","source","added_at"} (times ISO 8601)
 */
enum th_err th_store_accounts_list(struct th_store *st, json_t **out);

/* ---- applying a request's effects ----------------------------------------------------- */

/** One matching event. */
struct th_store_match {
    const char *rule_id;
    const char *dedup_key; /**< the full key (rule + account + region + image, or the rule) */
    const char *event_id;  /**< CloudTrail eventID; NULL when the event has none */
    int64_t event_time_ms; /**< eventTime, or ingest time */
    int dedup_period_minutes;
    int threshold;
    const char *title;
    const char *severity;            /**< "Medium" ... */
    const json_t *doc;               /**< borrowed: alert document built from this event */
    const char *const *destinations; /**< outbox rows made when this event opens an alert */
    size_t ndestinations;
};

/** What happened to one match. */
struct th_store_match_result {
    char alert_id[33]; /**< the alert the event counts toward; "" while below threshold */
    bool duplicate;    /**< its eventID had been seen: it counted nothing */
    bool new_alert;    /**< this event opened the alert (outbox rows were made) */
};

/** One rule error (DESIGN §1.4): kept, and delivered where a destination asks for them. */
struct th_store_rule_error {
    const char *rule_id;
    const char *event_id; /**< may be NULL */
    const char *error;
    const json_t *event; /**< borrowed */
    const char *const *destinations;
    size_t ndestinations;
};

/** A CreateAccountResult learned from the request. */
struct th_store_learned_account {
    const char *account_id;
    int64_t expires_ms;
};

/**
 * An event that takes an exposure back (DESIGN §5): the newest open alert of
 * (rule_id, dedup_key), if any and if its latest exposure is not later than the revocation, is
 * resolved; its dedup window ends (the next exposure opens a new alert), and every destination
 * the alert was queued for gets a TH_OUTBOX_RESOLVE row.
 */
struct th_store_resolution {
    const char *rule_id;
    const char *dedup_key;
    const char *event_id;  /**< may be NULL; a seen eventID resolves nothing twice */
    int64_t event_time_ms; /**< the revocation's eventTime: the alert's resolved_at */
};

/** Everything one request changes. Plain data, arrays borrowed. */
struct th_store_batch {
    const struct th_store_match *matches;
    size_t nmatches;
    const struct th_store_rule_error *rule_errors;
    size_t nrule_errors;
    const struct th_store_learned_account *accounts;
    size_t naccounts;
    const struct th_store_resolution *resolutions; /**< applied after the matches */
    size_t nresolutions;
};

/**
 * Applies @p batch in one transaction, in this order: accounts, then matches in order, then
 * resolutions, then rule errors. For each match: an eventID already seen counts nothing (duplicate,
 * with the alert id it counted toward); otherwise it is remembered and counted in the dedup window
 * of (rule_id, dedup_key) — a fixed window of dedup_period_minutes from the window's first event at
 * @p now_ms. When the count reaches threshold the alert is created (id = 32 hex chars derived from
 * rule, key and window start, so replicas agree) with one pending outbox row per destination;
 * later events update its event_count and last_seen.
 * @param[out] results one per match (may be NULL when nmatches is 0)
 * @return TH_OK when committed; TH_EIO/TH_ETEMP (busy, disk full) with nothing applied.
 */
enum th_err th_store_apply(struct th_store *st, const struct th_store_batch *batch, int64_t now_ms,
                           struct th_store_match_result *results);

/**
 * th_store_apply() for several requests' batches at once, in order, as if applied one after the
 * other, but committed together: with SQLite one transaction (all or none of the valid batches
 * is applied); with Redis each batch by itself.
 * @param[out] results one array per batch, as th_store_apply's
 * @param[out] rcs one answer per batch, as th_store_apply's
 */
void th_store_apply_group(struct th_store *st, const struct th_store_batch *batches, size_t n,
                          int64_t now_ms, struct th_store_match_result *const *results,
                          enum th_err *rcs);

/* ---- alerts --------------------------------------------------------------------------- */

/**
 * The alert as users see it: the stored document plus "id", "rule", "dedup_key", "status",
 * "event_count", "first_seen", "last_seen", "created_at", "updated_at" (ISO 8601).
 * @param[out] out new reference
 * @return TH_OK or TH_ENOTFOUND.
 */
enum th_err th_store_alert_get(struct th_store *st, const char *alert_id, json_t **out);

/** Newest first, at most @p limit. @param[out] out new array. */
enum th_err th_store_alerts_recent(struct th_store *st, size_t limit, json_t **out);

/** A rule-error record: {"id","rule","event_id","error","event","created_at"}. */
enum th_err th_store_rule_error_get(struct th_store *st, int64_t id, json_t **out);

/* ---- the outbox ----------------------------------------------------------------------- */

enum th_outbox_kind {
    TH_OUTBOX_ALERT = 0,
    TH_OUTBOX_RULE_ERROR,
    TH_OUTBOX_RESOLVE,
};

struct th_outbox_row {
    int64_t id;
    char destination[64];
    enum th_outbox_kind kind;
    char ref[40]; /**< alert id (ALERT, RESOLVE), or the rule-error record id in decimal */
    int attempts;
    int64_t created_ms;
    int64_t next_attempt_ms;
};

/**
 * Pending rows of @p destination due at @p now_ms, oldest first.
 * @param[out] rows at least @p max entries; @param[out] n how many were filled
 */
enum th_err th_store_outbox_due(struct th_store *st, const char *destination, int64_t now_ms,
                                struct th_outbox_row *rows, size_t max, size_t *n);

/** Marks a row delivered (only after the receiver's 2xx). */
/**
 * Whether th_store_outbox_due() hands the rows it returns to this handle alone until they are
 * done, retried or dead (the shared Redis outbox), rather than showing every handle the same
 * oldest rows (SQLite, where the caller keeps lanes apart).
 */
bool th_store_outbox_takes_rows(const struct th_store *st);

enum th_err th_store_outbox_done(struct th_store *st, int64_t id, int64_t now_ms);

/** Records a failed attempt: attempts+1, next attempt at @p next_ms, last error kept. */
enum th_err th_store_outbox_retry(struct th_store *st, int64_t id, int64_t next_ms,
                                  const char *error, int64_t now_ms);

/** Parks a row as a dead letter with the reason; it is never retried by itself. */
enum th_err th_store_outbox_dead(struct th_store *st, int64_t id, const char *error,
                                 int64_t now_ms);

/** Counts pending and dead rows of one destination (NULL: all). */
enum th_err th_store_outbox_counts(struct th_store *st, const char *destination, size_t *pending,
                                   size_t *dead);

/** The earliest next_attempt_ms of a pending row of @p destination (NULL: any); INT64_MAX when
 * none. */
enum th_err th_store_outbox_next_due(struct th_store *st, const char *destination,
                                     int64_t *next_ms);

/**
 * Lists outbox rows for operators (`trailhook outbox list`), newest first.
 * @param[in] destination NULL: all; @param[in] state "pending", "dead", "done" or NULL: all
 * @param[out] out new array of {"id","destination","kind","ref","state","attempts",
 *             "created_at","next_attempt_at","updated_at","last_error"}
 */
enum th_err th_store_outbox_list(struct th_store *st, const char *destination, const char *state,
                                 size_t limit, json_t **out);

/**
 * A dead letter back to pending, due now, attempts and age reset, last error cleared
 * (`trailhook outbox retry ID`). @return TH_EINVAL when the row is not dead, TH_ENOTFOUND.
 */
enum th_err th_store_outbox_requeue(struct th_store *st, int64_t id, int64_t now_ms);

/** Deletes a dead letter for good (`trailhook outbox drop ID`); TH_EINVAL if it is not dead. */
enum th_err th_store_outbox_drop(struct th_store *st, int64_t id);

/* ---- housekeeping ---------------------------------------------------------------------- */

/**
 * Forgets seen event IDs older than @p seen_ttl_ms, accounts expired for more than a day,
 * delivered outbox rows older than a week.
 */
enum th_err th_store_prune(struct th_store *st, int64_t now_ms, int64_t seen_ttl_ms);

/** Writes and rolls back a tiny transaction: TH_OK when the database accepts writes. */
enum th_err th_store_check_writable(struct th_store *st);

/**
 * For a handle whose writes may wait for the next flush (the delivery lanes' done and retry
 * marks): its commits stop calling fsync (SQLite synchronous=NORMAL in WAL mode). They survive a
 * crash of the process at once, and a power loss once any FULL commit (every ingest commit) or
 * checkpoint follows; before that a power loss can only make a delivered alert be sent again,
 * which at-least-once delivery allows. The 2xx promise of ingest does not rest on them.
 */
enum th_err th_store_defer_durability(struct th_store *st);

#endif
