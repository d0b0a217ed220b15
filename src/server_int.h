/* SPDX-License-Identifier: MIT */
/*
 * server_int.h -- the running service shared by server.c (lifecycle, workers) and http.c
 * (libmicrohttpd handlers). Not a public interface.
 */
#ifndef TRAILHOOK_SERVER_INT_H
#define TRAILHOOK_SERVER_INT_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "trailhook/cmd.h"
#include "trailhook/config.h"
#include "trailhook/deliver.h"
#include "trailhook/ingest.h"
#include "trailhook/metrics.h"
#include "trailhook/queue.h"
#include "trailhook/spec.h"
#include "trailhook/store.h"

struct th_server;

/** A listening address and what it serves (ingest, admin, or both when there is no admin_listen).
 */
struct th_listener {
    struct th_server *srv;
    unsigned serves; /* ON_INGEST | ON_ADMIN, see http.c */
    char *tls_cert;  /* PEM text when this listener speaks TLS, else NULL */
    char *tls_key;
};

/* HTTP handlers, for metrics: index into the handler label names of server_metrics.c. */
enum th_handler {
    TH_HANDLER_EVENTS = 0,
    TH_HANDLER_HEALTHZ,
    TH_HANDLER_READYZ,
    TH_HANDLER_ALERTS,
    TH_HANDLER_METRICS,
    TH_HANDLER_OTHER,
    TH_HANDLER_COUNT,
};

#define TH_HTTP_CODES 12 /* the status codes the service answers, and "other" */

/** Series the request path updates, created once (lazily) and then only added to. */
struct th_server_metrics {
    _Atomic(struct th_counter *) requests[TH_HANDLER_COUNT][TH_HTTP_CODES];
    struct th_histogram *duration[TH_HANDLER_COUNT];
    struct th_counter *received[6];   /* by enum th_input_form */
    struct th_counter *rejected[8];   /* by rejection reason, see server_metrics.c */
    struct th_counter **evaluations;  /* [spec][match, nomatch, error] */
    struct th_counter **alerts;       /* [spec] new alerts */
    struct th_counter **deduplicated; /* [spec] matches that opened no alert */
};

/** The one mutable object of the process (STYLE 16): built by th_cmd_serve, passed everywhere. */
struct th_server {
    /* cfg and specs are replaced by a reload: whoever reads them holds rt_lock for reading
     * (the HTTP callbacks, the workers per request); the reload holds it for writing. */
    pthread_rwlock_t rt_lock;
    const struct th_config *cfg;
    const struct th_spec_set *specs;
    struct th_config *owned_cfg; /* what a reload loaded (the first ones belong to main) */
    struct th_spec_set *owned_specs;
    const struct th_cmd_overrides *overrides; /* the command line, re-applied on reload */
    bool insecure_no_auth;
    struct th_queue *queue;
    pthread_t *workers;
    struct th_store **worker_stores; /* one per worker, used only by it */
    size_t nworkers;
    struct th_deliverer *deliverer;
    struct th_deliver_status status;
    struct MHD_Daemon *daemon;
    struct MHD_Daemon *admin_daemon;
    struct th_listener *listener; /* replaced when a reload brings a new certificate */
    struct th_listener admin_listener;
    struct th_metrics *metrics;
    struct th_server_metrics sm;
    int quiesced_fd; /* listening sockets handed back by MHD_quiesce_daemon, or -1 */
    int admin_quiesced_fd;
    _Atomic bool draining;
    pthread_mutex_t read_lock; /* guards read_store, used by GET /alerts */
    struct th_store *read_store;
    char request_prefix[13];
    _Atomic uint64_t request_seq;
};

/** A request being handled: lives from MHD's first callback to NOTIFY_COMPLETED (STYLE 14). */
struct th_http_req {
    struct th_server *srv;
    struct th_listener *listener;
    const struct route *route; /* NULL when no route matched (404) */
    int64_t started_us;        /* monotonic, for the duration histogram */
    unsigned status;           /* the status answered, for metrics */
    struct MHD_Connection *conn;
    char request_id[32];
    char *body;
    size_t len;
    size_t cap;
    bool answered;     /* a response was queued early (error before the body) */
    bool too_big;      /* the body passed max_body_bytes: 413 once it has been read */
    bool queued;       /* handed to a worker; the connection is suspended */
    _Atomic bool done; /* the worker filled result */
    struct th_ingest_result result;
};

/** Registers every metric family and the series the request path uses. */
void th_server_metrics_init(struct th_server *srv);

/** Frees what th_server_metrics_init allocated (not the registry). */
void th_server_metrics_cleanup(struct th_server *srv);

/** Counts one answered request of @p handler with @p status that took @p seconds. Any thread. */
void th_server_metrics_request(struct th_server *srv, enum th_handler handler, unsigned status,
                               double seconds);

/** Counts what a worker's ingest gave. Worker threads. */
void th_server_metrics_ingest(struct th_server *srv, const struct th_ingest_result *r);

/**
 * Counts a refused ingest request by the reason its @p status gives; @p evaluated says whether a
 * worker had evaluated it (a 503 then means the store, not saturation).
 */
void th_server_metrics_rejected(struct th_server *srv, unsigned status, bool evaluated);

/** (Re)creates the per-rule metric series for the current specs. Under rt_lock for writing. */
void th_server_metrics_rules(struct th_server *srv);

/**
 * Reloads the configuration and rule specs (SIGHUP, POST /-/reload): on any error the running
 * ones stay and the reload gauge goes to 0. Settings that need a restart (listen addresses,
 * state, workers, queue, TLS files) keep their running values, with a warning. Main thread only.
 * @return true when the new configuration is in effect.
 */
bool th_server_reload(struct th_server *srv);

/** Starts the listeners. @return TH_OK, or TH_EIO with @p err saying why. */
enum th_err th_http_start(struct th_server *srv, char *err, size_t errlen);

/** Drains: every new POST gets 503 + Retry-After (requests in flight go on). */
void th_http_quiesce(struct th_server *srv);

/** Stops accepting, then waits until no connection is open (answers sent), at most @p grace_ms. */
void th_http_wait_idle(struct th_server *srv, int64_t grace_ms);

/**
 * Serves the certificate and key now in tls_cert_file / tls_key_file when they changed: a new
 * daemon on the same address takes new connections, the old one finishes its own. Main thread.
 * @return TH_OK (also when nothing changed), TH_EINVAL when the new files do not load.
 */
enum th_err th_http_reload_tls(struct th_server *srv);

/** Closes the listeners and every connection. */
void th_http_stop(struct th_server *srv);

/** Hands a finished request back to its suspended connection. Worker threads. */
void th_http_resume(struct th_http_req *req);

#endif
