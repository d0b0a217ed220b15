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

#include "trailhook/config.h"
#include "trailhook/deliver.h"
#include "trailhook/ingest.h"
#include "trailhook/queue.h"
#include "trailhook/spec.h"
#include "trailhook/store.h"

/** The one mutable object of the process (STYLE 16): built by th_cmd_serve, passed everywhere. */
struct th_server {
    const struct th_config *cfg;
    const struct th_spec_set *specs;
    bool insecure_no_auth;
    struct th_queue *queue;
    pthread_t *workers;
    struct th_store **worker_stores; /* one per worker, used only by it */
    size_t nworkers;
    struct th_deliverer *deliverer;
    struct th_deliver_status status;
    struct MHD_Daemon *daemon;
    struct MHD_Daemon *admin_daemon;
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

/** Starts the listeners. @return TH_OK, or TH_EIO with @p err saying why. */
enum th_err th_http_start(struct th_server *srv, char *err, size_t errlen);

/** Stops accepting new connections; POSTs on open ones get 503 (requests in flight go on). */
void th_http_quiesce(struct th_server *srv);

/** Waits until no connection is open (their answers sent), at most @p grace_ms. */
void th_http_wait_idle(struct th_server *srv, int64_t grace_ms);

/** Closes the listeners and every connection. */
void th_http_stop(struct th_server *srv);

/** Hands a finished request back to its suspended connection. Worker threads. */
void th_http_resume(struct th_http_req *req);

#endif
