/* SPDX-License-Identifier: MIT */
/*
 * deliver.c -- delivery lanes over the outbox: each destination has `concurrency` threads, each
 * with its own store handle and HTTP client, sharing the destination's rate limit and the set
 * of rows in flight (so no row is sent twice at once). A housekeeping thread probes the store
 * and prunes it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "trailhook/clock.h"
#include "trailhook/deliver.h"
#include "trailhook/dest.h"
#include "trailhook/hash.h"
#include "trailhook/log.h"
#include "trailhook/mem.h"
#include "trailhook/store.h"

#define BATCH           48
#define MAX_LANES       16
#define BACKOFF_BASE_MS 1000
#define BACKOFF_CAP_MS  (60 * 1000) /* a pager waits a minute at most once a receiver is back */
#define HOUSEKEEPING_MS 5000
#define PRUNE_EVERY_MS  (10 * 60 * 1000)
#define IDLE_WAIT_MS    1000
#define HOLD_BASE_MS    500
#define HOLD_CAP_MS     5000
#define MAX_UNSAVED     1024 /* outcomes a destination remembers while the store refuses them */

/* What the lanes of one destination share. */
/* What a send gave, when the store could not record it (disk full, Redis away). */
struct unsaved {
    int64_t id;
    enum th_dest_outcome outcome;
    int64_t next_ms; /* TH_DEST_RETRY: when to try again */
    char detail[320];
};

struct dest_state {
    const struct th_config_dest *cfg;
    const struct th_dest_ops *ops;
    pthread_mutex_t lock; /* guards rl, inflight, unsaved and the hold */
    struct th_ratelimit rl;
    int64_t inflight[MAX_LANES];
    size_t ninflight;
    /* A row whose outcome the store refused stays pending there. Without this memory a lane
     * would take it again at once and page the receiver again every few milliseconds for as
     * long as the disk is full; with it, the row waits until its outcome is written. (A
     * restart forgets: the row is then sent again, as at-least-once allows.) */
    struct unsaved *unsaved;
    size_t nunsaved;
    size_t cap_unsaved;
    int64_t next_save_ms; /* monotonic: when to try writing them again */
    /* While a receiver is unreachable or has asked us to wait, the destination holds: one probe
     * at a time instead of every pending row failing on its own (and growing its backoff). */
    int64_t hold_until_ms;
    int unreachable; /* consecutive network errors and timeouts */
    /* Metric series of this destination (created at start; updated lock-free). */
    struct th_counter *sent[3];   /* by enum th_outbox_kind */
    struct th_counter *failed[6]; /* by enum th_dest_reason */
    struct th_counter *retries;
    struct th_histogram *latency;
};

struct lane {
    struct th_deliverer *d;
    struct dest_state *ds;
    pthread_t thread;
    bool started;
};

struct th_deliverer {
    const struct th_config *cfg;
    struct th_deliver_status *status;
    struct dest_state *dests;
    size_t ndests;
    struct lane *lanes;
    size_t nlanes;
    pthread_t housekeeper;
    bool housekeeper_started;
    pthread_mutex_t lock; /* guards stopping, generation */
    pthread_cond_t wake;
    bool stopping;
    uint64_t generation;         /* bumped by every notify */
    _Atomic int64_t abort_at_ms; /* monotonic; transfers still running past it are abandoned */
};

/* ---- backoff and rate limit --------------------------------------------------------------- */

int64_t th_deliver_backoff_ms(int attempts, int64_t base_ms, int64_t cap_ms, int64_t floor_ms)
{
    int64_t ceiling = base_ms;
    for (int i = 1; i < attempts && ceiling < cap_ms; i++) {
        ceiling *= 2;
    }
    if (ceiling > cap_ms) {
        ceiling = cap_ms;
    }
    uint64_t r = 0;
    if (!th_rand_bytes(&r, sizeof(r))) {
        r = (uint64_t)th_clock_mono_ms();
    }
    int64_t delay = (int64_t)(r % (uint64_t)(ceiling + 1));
    return delay < floor_ms ? floor_ms : delay;
}

void th_ratelimit_init(struct th_ratelimit *rl, double rate_per_minute, int burst, int64_t now_ms)
{
    rl->per_ms = rate_per_minute / 60000.0;
    rl->burst = burst < 1 ? 1 : burst;
    rl->tokens = rl->burst;
    rl->last_ms = now_ms;
}

int64_t th_ratelimit_take(struct th_ratelimit *rl, int64_t now_ms)
{
    if (rl->per_ms <= 0) {
        return 0;
    }
    if (now_ms > rl->last_ms) {
        rl->tokens += (double)(now_ms - rl->last_ms) * rl->per_ms;
        rl->tokens = rl->tokens > rl->burst ? rl->burst : rl->tokens;
        rl->last_ms = now_ms;
    }
    if (rl->tokens >= 1.0) {
        rl->tokens -= 1.0;
        return 0;
    }
    return (int64_t)((1.0 - rl->tokens) / rl->per_ms) + 1;
}

/* ---- stop and wake ------------------------------------------------------------------------ */

static bool stopping(struct th_deliverer *d, uint64_t *generation)
{
    pthread_mutex_lock(&d->lock);
    bool s = d->stopping;
    if (generation != NULL) {
        *generation = d->generation;
    }
    pthread_mutex_unlock(&d->lock);
    return s;
}

/* Sleeps until @p wake_ms (wall clock), a notify after @p generation, or stop. */
static void sleep_until(struct th_deliverer *d, int64_t wake_ms, uint64_t generation)
{
    int64_t now = th_clock_now_ms();
    if (wake_ms <= now) {
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t deadline = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + (wake_ms - now);
    ts.tv_sec = deadline / 1000;
    ts.tv_nsec = (long)(deadline % 1000) * 1000000;
    pthread_mutex_lock(&d->lock);
    while (!d->stopping && d->generation == generation) {
        if (pthread_cond_timedwait(&d->wake, &d->lock, &ts) != 0) {
            break;
        }
    }
    pthread_mutex_unlock(&d->lock);
}

static bool abort_transfer(void *ctx)
{
    struct th_deliverer *d = ctx;
    return th_clock_mono_ms() >= atomic_load(&d->abort_at_ms);
}

/* ---- one row -------------------------------------------------------------------------------- */

static json_t *load_doc(struct th_store *st, const struct th_outbox_row *row)
{
    json_t *doc = NULL;
    if (row->kind == TH_OUTBOX_RULE_ERROR) {
        th_store_rule_error_get(st, strtoll(row->ref, NULL, 10), &doc);
    } else {
        th_store_alert_get(st, row->ref, &doc);
    }
    return doc;
}

/* Writes one outcome to the store. */
static enum th_err save(struct th_store *st, const struct unsaved *u, int64_t now)
{
    switch (u->outcome) {
    case TH_DEST_DELIVERED:
        return th_store_outbox_done(st, u->id, now);
    case TH_DEST_DEAD:
        return th_store_outbox_dead(st, u->id, u->detail, now);
    case TH_DEST_RETRY:
        break;
    }
    return th_store_outbox_retry(st, u->id, u->next_ms, u->detail, now);
}

/* Whether the store failed for now (disk full, Redis away, busy) rather than for good: a row
 * an operator dropped or requeued meanwhile (TH_ENOTFOUND, TH_EINVAL) has nothing to record,
 * and remembering it would hold the entries behind it back forever. */
static bool store_failed_for_now(enum th_err rc)
{
    return rc == TH_EIO || rc == TH_ETEMP || rc == TH_ETIMEOUT;
}

/* Remembers an outcome the store refused; when the memory is full, the row is sent again. */
static void remember_unsaved(struct dest_state *ds, const struct unsaved *u)
{
    pthread_mutex_lock(&ds->lock);
    if (ds->nunsaved == ds->cap_unsaved && ds->cap_unsaved < MAX_UNSAVED) {
        ds->cap_unsaved = ds->cap_unsaved == 0 ? 16 : ds->cap_unsaved * 2;
        ds->unsaved = th_xrealloc(ds->unsaved, ds->cap_unsaved * sizeof(*ds->unsaved));
    }
    if (ds->nunsaved < ds->cap_unsaved) {
        ds->unsaved[ds->nunsaved++] = *u;
    }
    pthread_mutex_unlock(&ds->lock);
}

/* Writes the remembered outcomes the store takes now; called by each lane before it claims,
 * at most once a second (each refusal is logged by the store). */
static void save_unsaved(struct dest_state *ds, struct th_store *st)
{
    pthread_mutex_lock(&ds->lock);
    int64_t now = th_clock_mono_ms();
    if (ds->nunsaved == 0 || now < ds->next_save_ms) {
        pthread_mutex_unlock(&ds->lock);
        return;
    }
    ds->next_save_ms = now + 1000;
    while (ds->nunsaved > 0) {
        if (store_failed_for_now(save(st, &ds->unsaved[ds->nunsaved - 1], th_clock_now_ms()))) {
            break; /* the store still refuses: try again in a second */
        }
        ds->nunsaved--;
    }
    pthread_mutex_unlock(&ds->lock);
}

static bool is_unsaved(const struct dest_state *ds, int64_t id)
{
    for (size_t i = 0; i < ds->nunsaved; i++) {
        if (ds->unsaved[i].id == id) {
            return true;
        }
    }
    return false;
}

/* Records what a send gave; what the store refuses is remembered (see struct dest_state). */
static void settle(struct th_store *st, struct dest_state *ds, const struct th_outbox_row *row,
                   const struct th_dest_result *res, int64_t now)
{
    static const char *const kinds[] = {"alert", "rule error", "resolve"};
    const struct th_config_dest *cfg = ds->cfg;
    const char *what = kinds[row->kind];
    struct unsaved u = {row->id, res->outcome, 0, ""};

    if (res->outcome == TH_DEST_DELIVERED) {
        th_log(TH_LOG_INFO, "deliver", "%s: delivered %s %s", cfg->name, what, row->ref);
    } else if (res->outcome == TH_DEST_DEAD ||
               now - row->created_ms > cfg->max_age_seconds * 1000) {
        u.outcome = TH_DEST_DEAD;
        snprintf(
            u.detail, sizeof(u.detail), "%s%s",
            res->outcome == TH_DEST_DEAD ? "" : "undelivered past max_age_seconds: ", res->detail);
        th_log(TH_LOG_ERROR, "deliver", "%s: %s %s parked as a dead letter: %s", cfg->name, what,
               row->ref, u.detail);
    } else {
        int64_t delay = th_deliver_backoff_ms(row->attempts + 1, BACKOFF_BASE_MS, BACKOFF_CAP_MS,
                                              res->retry_after_ms);
        u.next_ms = now + delay;
        snprintf(u.detail, sizeof(u.detail), "%s", res->detail);
        th_log(TH_LOG_WARN, "deliver", "%s: %s %s failed (%s), retry in %lld ms", cfg->name, what,
               row->ref, res->detail, (long long)delay);
    }
    if (store_failed_for_now(save(st, &u, now))) {
        remember_unsaved(ds, &u);
    }
}

static void count(const struct dest_state *ds, const struct th_outbox_row *row,
                  const struct th_dest_result *res, double seconds)
{
    th_histogram_observe(ds->latency, seconds);
    if (res->outcome == TH_DEST_DELIVERED) {
        th_counter_add(ds->sent[row->kind], 1);
        return;
    }
    th_counter_add(ds->failed[res->reason], 1);
    if (res->outcome == TH_DEST_RETRY) {
        th_counter_add(ds->retries, 1);
    }
}

static void deliver_row(struct th_store *st, struct dest_state *ds, const struct th_dest_io *io,
                        const struct th_outbox_row *row, struct th_dest_result *res)
{
    json_t *doc = load_doc(st, row);
    int64_t start = th_clock_mono_us();

    memset(res, 0, sizeof(*res));
    if (doc == NULL) {
        res->outcome = TH_DEST_DEAD;
        snprintf(res->detail, sizeof(res->detail), "what the row refers to is not in the store");
    } else {
        ds->ops->send(ds->cfg, io, row->kind, doc, res);
    }
    json_decref(doc);
    count(ds, row, res, (double)(th_clock_mono_us() - start) / 1e6);
    settle(st, ds, row, res, th_clock_now_ms());
}

/* Success lifts the hold; an unreachable receiver holds the destination with growing probes;
 * a 429 with Retry-After holds it as long as the receiver asked (Slack's limit is per webhook,
 * not per message). A 5xx on one message says nothing about the next: no hold. */
static void update_hold(struct dest_state *ds, const struct th_dest_result *res, int64_t now)
{
    pthread_mutex_lock(&ds->lock);
    if (res->outcome == TH_DEST_DELIVERED) {
        ds->unreachable = 0;
        ds->hold_until_ms = 0;
    } else if (res->reason == TH_DEST_REASON_NETWORK || res->reason == TH_DEST_REASON_TIMEOUT) {
        ds->unreachable++;
        ds->hold_until_ms = now + th_deliver_backoff_ms(ds->unreachable, HOLD_BASE_MS, HOLD_CAP_MS,
                                                        HOLD_BASE_MS / 2);
    } else if (res->reason == TH_DEST_REASON_RATELIMITED && res->retry_after_ms > 0) {
        ds->hold_until_ms = now + res->retry_after_ms;
    }
    pthread_mutex_unlock(&ds->lock);
}

/* ---- lanes ---------------------------------------------------------------------------------- */

static bool in_flight(const struct dest_state *ds, int64_t id)
{
    for (size_t i = 0; i < ds->ninflight; i++) {
        if (ds->inflight[i] == id) {
            return true;
        }
    }
    return false;
}

static void release(struct dest_state *ds, int64_t id)
{
    pthread_mutex_lock(&ds->lock);
    for (size_t i = 0; i < ds->ninflight; i++) {
        if (ds->inflight[i] == id) {
            ds->inflight[i] = ds->inflight[--ds->ninflight];
            break;
        }
    }
    pthread_mutex_unlock(&ds->lock);
}

/* Claims the oldest due row no other lane of the destination holds, unless the destination is
 * on hold (then *hold_until says till when; after it, each lane's next send is a probe). */
static bool claim(struct dest_state *ds, struct th_store *st, struct th_outbox_row *out,
                  int64_t *hold_until)
{
    struct th_outbox_row rows[BATCH];
    size_t n = 0;
    bool found = false;
    int64_t now = th_clock_now_ms();
    pthread_mutex_lock(&ds->lock);
    *hold_until = now < ds->hold_until_ms ? ds->hold_until_ms : 0;
    /* Rows a shared (Redis) outbox returns are this lane's until done: take one at a time, so
     * the destination's other lanes and replicas get the rest. */
    size_t want = th_store_outbox_takes_rows(st) ? 1 : BATCH;
    if (*hold_until == 0 && th_store_outbox_due(st, ds->cfg->name, now, rows, want, &n) == TH_OK) {
        for (size_t i = 0; i < n && !found; i++) {
            if (!in_flight(ds, rows[i].id) && !is_unsaved(ds, rows[i].id)) {
                *out = rows[i];
                ds->inflight[ds->ninflight++] = rows[i].id;
                found = true;
            }
        }
    }
    pthread_mutex_unlock(&ds->lock);
    return found;
}

/* Waits for the destination's rate limit; false when stopping first. */
static bool await_token(struct lane *l)
{
    for (;;) {
        pthread_mutex_lock(&l->ds->lock);
        int64_t wait = th_ratelimit_take(&l->ds->rl, th_clock_mono_ms());
        pthread_mutex_unlock(&l->ds->lock);
        if (wait == 0) {
            return true;
        }
        uint64_t gen;
        if (stopping(l->d, &gen)) {
            return false;
        }
        nanosleep(&(struct timespec){0, (long)(wait < 100 ? wait : 100) * 1000000}, NULL);
    }
}

static void lane_loop(struct lane *l, struct th_store *st, const struct th_dest_io *base)
{
    uint64_t gen = 0;
    while (!stopping(l->d, &gen)) {
        struct th_outbox_row row;
        int64_t hold = 0;
        save_unsaved(l->ds, st);
        if (claim(l->ds, st, &row, &hold)) {
            if (await_token(l)) {
                struct th_dest_io io = *base;
                struct th_dest_result res;
                io.now_ms = th_clock_now_ms();
                deliver_row(st, l->ds, &io, &row, &res);
                update_hold(l->ds, &res, th_clock_now_ms());
            }
            release(l->ds, row.id);
            continue;
        }
        int64_t next = INT64_MAX;
        th_store_outbox_next_due(st, l->ds->cfg->name, &next);
        int64_t now = th_clock_now_ms();
        /* Due rows all held by other lanes (or a probe in flight): look again shortly. */
        int64_t wake = next <= now ? now + 50 : next;
        wake = hold > wake ? hold : wake;
        sleep_until(l->d, wake < now + IDLE_WAIT_MS ? wake : now + IDLE_WAIT_MS, gen);
    }
}

static void *lane_main(void *arg)
{
    struct lane *l = arg;
    struct th_store *st = NULL;
    struct th_dest_io io = {NULL, stdout, 0};
    char err[256] = "";

    if (th_store_open_config(l->d->cfg, TH_STORE_READWRITE, &st, err, sizeof(err)) != TH_OK) {
        th_log(TH_LOG_ERROR, "deliver", "%s: cannot open the store: %s", l->ds->cfg->name, err);
        return NULL;
    }
    /* A delivery's outcome needs no fsync of its own: lost to a power cut, it is only sent
     * again; and a lane waiting on the disk would hold the write lock ingest commits need. */
    th_store_defer_durability(st);
    if (l->ds->cfg->type != TH_DEST_CONSOLE) {
        io.http = th_httpc_new(abort_transfer, l->d);
    }
    lane_loop(l, st, &io);
    th_httpc_free(io.http);
    th_store_free(st);
    return NULL;
}

/* ---- housekeeping --------------------------------------------------------------------------- */

static void housekeeping(struct th_deliverer *d, struct th_store *st, int64_t *last_prune)
{
    int64_t now = th_clock_now_ms();
    bool writable = th_store_check_writable(st) == TH_OK;
    if (writable != atomic_load(&d->status->store_writable)) {
        th_log(writable ? TH_LOG_INFO : TH_LOG_ERROR, "store", "the store is %s",
               writable ? "writable again" : "not writable");
    }
    atomic_store(&d->status->store_writable, writable);
    if (writable && now - *last_prune > PRUNE_EVERY_MS) {
        th_store_prune(st, now, d->cfg->seen_event_ttl_seconds * 1000);
        *last_prune = now;
    }
}

static void *housekeeper_main(void *arg)
{
    struct th_deliverer *d = arg;
    struct th_store *st = NULL;
    char err[256] = "";
    int64_t last_prune = 0;
    uint64_t gen = 0;

    if (th_store_open_config(d->cfg, TH_STORE_READWRITE, &st, err, sizeof(err)) != TH_OK) {
        th_log(TH_LOG_ERROR, "store", "housekeeping cannot open the store: %s", err);
        atomic_store(&d->status->store_writable, false);
        return NULL;
    }
    while (!stopping(d, &gen)) {
        housekeeping(d, st, &last_prune);
        int64_t until = th_clock_now_ms() + HOUSEKEEPING_MS;
        /* Notifies wake this thread too; sleep on until the period is over. */
        while (th_clock_now_ms() < until && !stopping(d, &gen)) {
            sleep_until(d, until, gen);
        }
    }
    th_store_free(st);
    return NULL;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

static void init_series(struct dest_state *ds, struct th_metrics *m)
{
    static const char *const kinds[] = {"alert", "rule_error", "resolve"};
    static const char *const reasons[] = {"other",       "client",  "server",
                                          "ratelimited", "timeout", "network"};
    static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
    char esc[160];
    char labels[256];
    th_metrics_escape(ds->cfg->name, esc, sizeof(esc));
    for (size_t i = 0; i < 3; i++) {
        snprintf(labels, sizeof(labels), "destination=\"%s\",type=\"%s\"", esc, kinds[i]);
        ds->sent[i] =
            th_metrics_counter(m, "trailhook_notifications_total",
                               "Notifications delivered (2xx), by destination and type.", labels);
    }
    /* Reason "other" only stands in for outcomes without a reason (never expected). */
    for (size_t i = 0; i < 6; i++) {
        snprintf(labels, sizeof(labels), "destination=\"%s\",reason=\"%s\"", esc, reasons[i]);
        ds->failed[i] = th_metrics_counter(
            m, "trailhook_notifications_failed_total",
            "Failed delivery attempts, by destination and reason (client, server, ratelimited, "
            "timeout, network).",
            labels);
    }
    snprintf(labels, sizeof(labels), "destination=\"%s\"", esc);
    ds->retries = th_metrics_counter(m, "trailhook_notification_retries_total",
                                     "Delivery attempts scheduled again after a failure.", labels);
    ds->latency = th_metrics_histogram(m, "trailhook_notification_latency_seconds",
                                       "Time one delivery attempt took, by destination.", labels,
                                       buckets, sizeof(buckets) / sizeof(buckets[0]));
}

enum th_err th_deliverer_new(const struct th_config *cfg, struct th_deliver_status *status,
                             struct th_metrics *metrics, struct th_deliverer **out, char *err,
                             size_t errlen)
{
    struct th_deliverer *d = th_xcalloc(1, sizeof(*d));
    size_t nlanes = 0;
    (void)err;
    (void)errlen;
    d->cfg = cfg;
    d->status = status;
    atomic_store(&d->abort_at_ms, INT64_MAX);
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->wake, NULL);
    d->dests = th_xcalloc(cfg->ndestinations, sizeof(*d->dests));
    for (size_t i = 0; i < cfg->ndestinations; i++) {
        struct dest_state *ds = &d->dests[i];
        ds->cfg = &cfg->destinations[i];
        ds->ops = th_dest_ops_for(ds->cfg->type);
        pthread_mutex_init(&ds->lock, NULL);
        th_ratelimit_init(&ds->rl, ds->cfg->rate_per_minute, ds->cfg->burst, th_clock_mono_ms());
        init_series(ds, metrics);
        nlanes += ds->cfg->concurrency < 1 ? 1 : (size_t)ds->cfg->concurrency;
        d->ndests++;
    }
    d->lanes = th_xcalloc(nlanes, sizeof(*d->lanes));
    for (size_t i = 0; i < d->ndests; i++) {
        int n = d->dests[i].cfg->concurrency < 1 ? 1 : d->dests[i].cfg->concurrency;
        for (int k = 0; k < n && k < MAX_LANES; k++) {
            d->lanes[d->nlanes].d = d;
            d->lanes[d->nlanes].ds = &d->dests[i];
            d->nlanes++;
        }
    }
    *out = d;
    return TH_OK;
}

enum th_err th_deliverer_start(struct th_deliverer *d)
{
    for (size_t i = 0; i < d->nlanes; i++) {
        if (pthread_create(&d->lanes[i].thread, NULL, lane_main, &d->lanes[i]) != 0) {
            return TH_ENOMEM;
        }
        d->lanes[i].started = true;
    }
    if (pthread_create(&d->housekeeper, NULL, housekeeper_main, d) != 0) {
        return TH_ENOMEM;
    }
    d->housekeeper_started = true;
    return TH_OK;
}

void th_deliverer_notify(struct th_deliverer *d)
{
    pthread_mutex_lock(&d->lock);
    d->generation++;
    pthread_cond_broadcast(&d->wake);
    pthread_mutex_unlock(&d->lock);
}

void th_deliverer_stop(struct th_deliverer *d, int64_t grace_ms)
{
    if (d == NULL) {
        return;
    }
    atomic_store(&d->abort_at_ms, th_clock_mono_ms() + grace_ms);
    pthread_mutex_lock(&d->lock);
    d->stopping = true;
    pthread_cond_broadcast(&d->wake);
    pthread_mutex_unlock(&d->lock);
    for (size_t i = 0; i < d->nlanes; i++) {
        if (d->lanes[i].started) {
            pthread_join(d->lanes[i].thread, NULL);
            d->lanes[i].started = false;
        }
    }
    if (d->housekeeper_started) {
        pthread_join(d->housekeeper, NULL);
        d->housekeeper_started = false;
    }
}

void th_deliverer_free(struct th_deliverer *d)
{
    if (d == NULL) {
        return;
    }
    for (size_t i = 0; i < d->ndests; i++) {
        pthread_mutex_destroy(&d->dests[i].lock);
        free(d->dests[i].unsaved);
    }
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->wake);
    free(d->lanes);
    free(d->dests);
    free(d);
}
