/* SPDX-License-Identifier: MIT */
/*
 * store_redis.h -- the Redis state backend (state.backend: redis): the same store interface as
 * SQLite, shared by several replicas. Every th_store_* function of store.h hands a store opened
 * by th_store_redis_open() to its th_store_redis_* twin here, with the same contract; only
 * opening and closing differ. Not a public interface.
 */
#ifndef TRAILHOOK_STORE_REDIS_H
#define TRAILHOOK_STORE_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "trailhook/err.h"
#include "trailhook/store.h"

/** The connection and its state; owned by a struct th_store (its redis member). */
struct th_redis;

/**
 * Connects @p st (already zeroed, its redis member NULL) to @p url
 * (redis://[user:password@]host:port/db). TH_STORE_READONLY never writes.
 * @p claim_after_ms: a delivery another replica took and did not finish is taken over after it.
 * On failure, one sentence in @p err that never shows the password.
 */
enum th_err th_store_redis_open(struct th_store *st, const char *url, enum th_store_mode mode,
                                int64_t claim_after_ms, char *err, size_t errlen);

/** Closes the connection and frees st->redis. */
void th_store_redis_close(struct th_store *st);

enum th_err th_store_redis_account_add(struct th_store *st, const char *account_id,
                                       int64_t expires_ms, const char *source, int64_t now_ms);
enum th_err th_store_redis_account_remove(struct th_store *st, const char *account_id);
enum th_err th_store_redis_account_check(struct th_store *st, const char *account_id, int64_t at_ms,
                                         bool *is_new);
enum th_err th_store_redis_accounts_list(struct th_store *st, json_t **out);
enum th_err th_store_redis_prune(struct th_store *st, int64_t now_ms, int64_t seen_ttl_ms);
enum th_err th_store_redis_check_writable(struct th_store *st);
enum th_err th_store_redis_apply(struct th_store *st, const struct th_store_batch *batch,
                                 int64_t now_ms, struct th_store_match_result *results);
enum th_err th_store_redis_alert_get(struct th_store *st, const char *alert_id, json_t **out);
enum th_err th_store_redis_alerts_recent(struct th_store *st, size_t limit, json_t **out);
enum th_err th_store_redis_rule_error_get(struct th_store *st, int64_t id, json_t **out);
enum th_err th_store_redis_outbox_due(struct th_store *st, const char *destination, int64_t now_ms,
                                      struct th_outbox_row *rows, size_t max, size_t *n);
enum th_err th_store_redis_outbox_done(struct th_store *st, int64_t id, int64_t now_ms);
enum th_err th_store_redis_outbox_retry(struct th_store *st, int64_t id, int64_t next_ms,
                                        const char *error, int64_t now_ms);
enum th_err th_store_redis_outbox_dead(struct th_store *st, int64_t id, const char *error,
                                       int64_t now_ms);
enum th_err th_store_redis_outbox_counts(struct th_store *st, const char *destination,
                                         size_t *pending, size_t *dead);
enum th_err th_store_redis_outbox_next_due(struct th_store *st, const char *destination,
                                           int64_t *next_ms);
enum th_err th_store_redis_outbox_list(struct th_store *st, const char *destination,
                                       const char *state, size_t limit, json_t **out);
enum th_err th_store_redis_outbox_requeue(struct th_store *st, int64_t id, int64_t now_ms);
enum th_err th_store_redis_outbox_drop(struct th_store *st, int64_t id);

#endif
