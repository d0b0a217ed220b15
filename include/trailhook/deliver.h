/* SPDX-License-Identifier: MIT */
/*
 * deliver.h -- the deliverer that drains the outbox (DESIGN §5). Each destination has its own
 * lanes (threads, `concurrency` of them), its own rate limit and its own rows: a destination
 * that fails or hangs never delays or re-sends another. A row is marked done only after
 * success; temporary failures are retried with exponential backoff and full jitter (Retry-After
 * as a floor); permanent ones, and rows older than max_age_seconds, become dead letters.
 */
#ifndef TRAILHOOK_DELIVER_H
#define TRAILHOOK_DELIVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "trailhook/config.h"
#include "trailhook/err.h"
#include "trailhook/metrics.h"

struct th_deliverer;

/** Shared flags the deliverer keeps up to date for /readyz. */
struct th_deliver_status {
    _Atomic bool store_writable;
};

/**
 * Builds the deliverer for every configured destination.
 * @param[in] metrics registry for trailhook_notification* series (borrowed, outlives the
 *            deliverer)
 * @param[out] out new deliverer; th_deliverer_stop() then th_deliverer_free()
 */
enum th_err th_deliverer_new(const struct th_config *cfg, struct th_deliver_status *status,
                             struct th_metrics *metrics, struct th_deliverer **out, char *err,
                             size_t errlen);

/** Starts the lanes and the housekeeping thread (each opens its own store handle). */
enum th_err th_deliverer_start(struct th_deliverer *d);

/** Wakes the lanes: new outbox rows were committed. Any thread. */
void th_deliverer_notify(struct th_deliverer *d);

/**
 * Stops: lanes finish the send in progress, and a send still running @p grace_ms after the call
 * is abandoned (its row stays pending, sent again after the next start).
 */
void th_deliverer_stop(struct th_deliverer *d, int64_t grace_ms);

void th_deliverer_free(struct th_deliverer *d);

/**
 * The delay before retry number @p attempts (1-based): a random value in [0, min(cap,
 * base * 2^(attempts-1))] ("full jitter"), never below @p floor_ms.
 */
int64_t th_deliver_backoff_ms(int attempts, int64_t base_ms, int64_t cap_ms, int64_t floor_ms);

/** A token bucket: @p rate_per_minute sustained (0: unlimited), @p burst at once. */
struct th_ratelimit {
    double tokens;
    double per_ms;
    double burst;
    int64_t last_ms;
};

void th_ratelimit_init(struct th_ratelimit *rl, double rate_per_minute, int burst, int64_t now_ms);

/** Takes a token when one is there (returns 0), else returns the milliseconds to wait. */
int64_t th_ratelimit_take(struct th_ratelimit *rl, int64_t now_ms);

#endif
