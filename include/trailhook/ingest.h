/* SPDX-License-Identifier: MIT */
/*
 * ingest.h -- what a worker does with one request body: normalise it, evaluate every record,
 * commit matches, rule errors and learned accounts in one store transaction, and say what to
 * answer (DESIGN §2). Nothing of a rejected request is applied.
 * Threads: call from one worker at a time per store handle.
 */
#ifndef TRAILHOOK_INGEST_H
#define TRAILHOOK_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#include "trailhook/config.h"
#include "trailhook/input.h"
#include "trailhook/spec.h"
#include "trailhook/store.h"

/** What one rule spec did with a request's records (for metrics). */
struct th_ingest_rule_counts {
    size_t match;
    size_t nomatch;
    size_t error;
    size_t new_alerts;   /**< matches that opened an alert */
    size_t deduplicated; /**< matches that joined an open alert or repeated an eventID */
};

/** The answer to give. */
struct th_ingest_result {
    unsigned status;      /**< 202, 400, 413, 503 */
    json_t *body;         /**< new reference: the JSON body without request_id */
    unsigned retry_after; /**< seconds for Retry-After, 0 for none */
    enum th_input_form form;
    size_t accepted;
    size_t matched;
    size_t rule_errors;
    bool new_alerts;   /**< outbox rows were committed: wake the deliverer */
    bool store_failed; /**< the 503 is the store's: it cannot write (not merely busy) */
    struct th_ingest_rule_counts *rules; /**< one per spec of the set, or NULL; free() it */
};

/** Bodies th_ingest_quick() takes: a few events; larger ones would hold up the HTTP thread. */
#define TH_INGEST_QUICK_MAX_BYTES ((size_t)64 * 1024)

/**
 * Answers a body at once when that needs neither a rule nor the store: a plain (not gzip) body
 * of at most TH_INGEST_QUICK_MAX_BYTES that is bad (400, 413) or whose records are all
 * CloudTrail records no rule wants (202). Most events are, so the HTTP thread answers them
 * without handing them to a worker. The answer is the one th_ingest_process() would give, but a
 * 202 leaves out->body NULL: th_ingest_skipped_answer() writes it.
 * @return true with @p out filled; false when a worker must process the body
 */
bool th_ingest_quick(const struct th_config *cfg, const struct th_spec_set *specs, const char *body,
                     size_t len, struct th_ingest_result *out);

/** The text of th_ingest_quick's 202 with its request id (free() it). */
char *th_ingest_skipped_answer(size_t accepted, const char *request_id);

/** One request between its evaluation and its commit. */
struct th_ingest_job;

/**
 * Parses and evaluates @p body (already size-checked; may be gzip); what must be stored waits in
 * the job. The body is no longer needed afterwards.
 * @param[out] out the answer, filled now for a bad body, else by th_ingest_commit()
 * @return the job (always); release with th_ingest_job_free() after the commit
 */
struct th_ingest_job *th_ingest_prepare(const struct th_config *cfg,
                                        const struct th_spec_set *specs, struct th_store *st,
                                        const char *body, size_t len, struct th_ingest_result *out);

/**
 * Stores what @p n jobs produced in one commit (th_store_apply_group) and fills each one's
 * answer: 202 once its alerts are committed, 503 when the store refused them. Jobs that wrote
 * nothing, or were answered at parsing, are answered without the store.
 */
void th_ingest_commit(struct th_store *st, struct th_ingest_job *const *jobs, size_t n);

void th_ingest_job_free(struct th_ingest_job *job);

/**
 * Processes @p body (already size-checked; may be gzip): prepare, commit and free in one.
 * @param[out] out filled in every case; json_decref(out->body) when done
 */
void th_ingest_process(const struct th_config *cfg, const struct th_spec_set *specs,
                       struct th_store *st, const char *body, size_t len,
                       struct th_ingest_result *out);

#endif
